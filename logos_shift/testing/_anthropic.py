"""Anthropic Messages wire format for the fake provider.

Pure functions from a ``/v1/messages`` request body and a
:class:`~logos_shift.testing._common.Reply` to the JSON message or the event stream the
real API sends (``message_start`` ... ``message_stop``), shaped so the installed
anthropic SDK's ``messages.stream()`` / ``parse()`` helpers and beta client accept
them.  Streamed usage follows the real API: ``message_start`` carries the input
tokens and ``output_tokens: 1``; ``message_delta`` carries the *cumulative* output.
"""

from __future__ import annotations

import json
from typing import Any

from ._common import (
    Event,
    Reply,
    ToolCall,
    count_tokens,
    example_from_schema,
    new_id,
    scripted_tool_calls,
    split_text,
    text_of,
)

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}


def error_body(status: int, model: str | None = None, message: str | None = None) -> Any:
    """Return Anthropic's error JSON for an HTTP status.

    Args:
        status: The HTTP status code.
        model: The requested model (used in the 404 message).
        message: Overrides the default message.

    Returns:
        ``{"type": "error", "error": {"type", "message"}}``.
    """
    kind = _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    default = f"model: {model}" if status == 404 else f"Fake error {status}"
    return {"type": "error", "error": {"type": kind, "message": message or default}}


def stream_error_event(message: str | None = None) -> Event:
    """Return the ``event: error`` Anthropic sends when a stream fails mid-way.

    Args:
        message: Overrides the default ``Overloaded`` message.

    Returns:
        The event.
    """
    return (
        "error",
        {
            "type": "error",
            "error": {"type": "overloaded_error", "message": message or "Overloaded"},
        },
    )


def _output_schema(body: dict[str, Any]) -> Any:
    fmt = (body.get("output_config") or {}).get("format") or body.get("output_format") or {}
    return fmt.get("schema") if fmt.get("type") == "json_schema" else None


def _ends_with_tool_result(messages: list[Any]) -> bool:
    last = messages[-1] if messages and isinstance(messages[-1], dict) else {}
    content = last.get("content")
    return isinstance(content, list) and any(
        isinstance(b, dict) and b.get("type") == "tool_result" for b in content
    )


def plan_messages(
    body: dict[str, Any], text: str | None = None, tool_calls: list[dict[str, Any]] | None = None
) -> Reply:
    """Decide the reply to a Messages request.

    Scripted text / tool calls win; then a structured-output schema
    (``output_config.format`` or beta ``output_format``) gets a JSON example; then
    a request with tools (unless its last message holds a ``tool_result`` or
    ``tool_choice`` is ``none``) gets a ``tool_use`` of the forced or first tool;
    otherwise ``"Echo: <last user message>"``.

    Args:
        body: The request JSON.
        text: Scripted text.
        tool_calls: Scripted tool calls (``arguments`` or ``input``).

    Returns:
        The reply.
    """
    if tool_calls is not None or text is not None:
        return Reply(text=text, tool_calls=scripted_tool_calls(tool_calls or [], "toolu_"))
    schema = _output_schema(body)
    if schema is not None:
        return Reply(text=json.dumps(example_from_schema(schema)))
    messages = body.get("messages") or []
    choice = body.get("tool_choice") or {}
    tools = [t for t in body.get("tools") or [] if isinstance(t, dict) and "input_schema" in t]
    if tools and choice.get("type") != "none" and not _ends_with_tool_result(messages):
        tool = next((t for t in tools if t.get("name") == choice.get("name")), tools[0])
        args = json.dumps(example_from_schema(tool["input_schema"]))
        return Reply(
            tool_calls=[ToolCall(name=str(tool.get("name")), arguments=args, id=new_id("toolu_"))]
        )
    last_user = next(
        (m for m in reversed(messages) if isinstance(m, dict) and m.get("role") == "user"), {}
    )
    return Reply(text=f"Echo: {text_of(last_user.get('content'))}")


def input_tokens(body: dict[str, Any]) -> int:
    """Count the request's input "tokens" (words in messages and system prompt).

    Args:
        body: The request JSON.

    Returns:
        The count.
    """
    return count_tokens(body.get("messages")) + count_tokens(body.get("system") or "")


def _output_tokens(reply: Reply) -> int:
    # At least 1, as message_start already reports one output token.
    return max(
        1,
        count_tokens(reply.text or "")
        + sum(count_tokens(c.arguments) + 1 for c in reply.tool_calls),
    )


def _stop_reason(reply: Reply) -> str:
    return reply.stop_reason or ("tool_use" if reply.tool_calls else "end_turn")


def _usage(inp: int, out: int) -> dict[str, Any]:
    return {
        "input_tokens": inp,
        "output_tokens": out,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "service_tier": "standard",
    }


def _input(arguments: str) -> Any:
    # Scripted arguments may be deliberately malformed JSON: the stream still sends them
    # verbatim (so the SDK's own parse error shows), the JSON body falls back to {}.
    try:
        return json.loads(arguments)
    except ValueError:
        return {}


def _blocks(reply: Reply) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if reply.text is not None:
        blocks.append({"type": "text", "text": reply.text, "citations": None})
    for call in reply.tool_calls:
        blocks.append(
            {
                "type": "tool_use",
                "id": call.id,
                "name": call.name,
                "input": _input(call.arguments),
            }
        )
    return blocks


def message_json(body: dict[str, Any], reply: Reply) -> dict[str, Any]:
    """Return a ``message`` object for ``reply``.

    Args:
        body: The request JSON (``model`` is echoed).
        reply: What the model says.

    Returns:
        The response JSON (id ``msg_...``).
    """
    return {
        "id": new_id("msg_"),
        "type": "message",
        "role": "assistant",
        "model": body.get("model"),
        "content": _blocks(reply),
        "stop_reason": _stop_reason(reply),
        "stop_sequence": None,
        "usage": _usage(input_tokens(body), _output_tokens(reply)),
    }


def message_events(body: dict[str, Any], reply: Reply) -> list[Event]:
    """Return the event stream of a streamed Messages call.

    ``message_start`` (usage: input tokens, ``output_tokens: 1``), ``ping``, per
    content block ``content_block_start`` / ``content_block_delta`` (text split into
    ``reply.chunks`` ``text_delta``s; tool input split across ``input_json_delta``s)
    / ``content_block_stop``, ``message_delta`` with the cumulative output tokens
    and the stop reason, and ``message_stop``.

    Args:
        body: The request JSON.
        reply: What the model says.

    Returns:
        The events, in order.
    """
    start = message_json(body, reply)
    start.update(content=[], stop_reason=None, usage=_usage(input_tokens(body), 1))
    events: list[Event] = [
        ("message_start", {"type": "message_start", "message": start}),
        ("ping", {"type": "ping"}),
    ]

    def add(kind: str, data: dict[str, Any]) -> None:
        events.append((kind, {"type": kind, **data}))

    for index, block in enumerate(_blocks(reply)):
        if block["type"] == "text":
            add(
                "content_block_start",
                {"index": index, "content_block": {"type": "text", "text": ""}},
            )
            for piece in split_text(block["text"], reply.chunks):
                add(
                    "content_block_delta",
                    {"index": index, "delta": {"type": "text_delta", "text": piece}},
                )
        else:
            add("content_block_start", {"index": index, "content_block": {**block, "input": {}}})
            args = next(c.arguments for c in reply.tool_calls if c.id == block["id"])
            for piece in ["", *split_text(args, max(2, min(reply.chunks, len(args))))]:
                add(
                    "content_block_delta",
                    {"index": index, "delta": {"type": "input_json_delta", "partial_json": piece}},
                )
        add("content_block_stop", {"index": index})
    delta = {"stop_reason": _stop_reason(reply), "stop_sequence": None}
    add("message_delta", {"delta": delta, "usage": {"output_tokens": _output_tokens(reply)}})
    add("message_stop", {})
    return events
