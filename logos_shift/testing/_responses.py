"""OpenAI Responses API wire format for the fake provider.

Pure functions from a ``/v1/responses`` request body and a
:class:`~logos_shift.testing._common.Reply` to the ``response`` object or the typed
event stream (``response.created`` ... ``response.completed``) in the order the
installed openai SDK's ``ResponseStreamState`` insists on, so ``responses.stream()``
and ``responses.parse()`` work.
"""

from __future__ import annotations

from typing import Any

from ._common import Event, Reply, count_tokens, new_id, now, split_text
from ._openai import SERVER_ERROR, last_user_text, plan_reply


def plan_responses(
    body: dict[str, Any], text: str | None = None, tool_calls: list[dict[str, Any]] | None = None
) -> Reply:
    """Decide the reply to a Responses API request (same rules as :func:`plan_chat`).

    Args:
        body: The request JSON.
        text: Scripted text.
        tool_calls: Scripted tool calls.

    Returns:
        The reply.
    """
    fmt = (body.get("text") or {}).get("format") or {}
    schema = (fmt.get("schema") or {"type": "object"}) if fmt.get("type") == "json_schema" else None
    items = body.get("input")
    last = items[-1] if isinstance(items, list) and items and isinstance(items[-1], dict) else {}
    return plan_reply(
        body,
        last_user_text(items),
        schema,
        last.get("type") == "function_call_output",
        text,
        tool_calls,
    )


def _responses_output(reply: Reply, ids: list[str]) -> list[dict[str, Any]]:
    output: list[dict[str, Any]] = []
    if reply.text is not None:
        part = {"type": "output_text", "text": reply.text, "annotations": [], "logprobs": []}
        output.append(
            {
                "id": ids[0],
                "type": "message",
                "status": "completed",
                "role": "assistant",
                "content": [part],
            }
        )
    for k, call in enumerate(reply.tool_calls):
        output.append(
            {
                "id": ids[k + 1],
                "type": "function_call",
                "status": "completed",
                "call_id": call.id,
                "name": call.name,
                "arguments": call.arguments,
            }
        )
    return output


def _response_object(
    body: dict[str, Any], reply: Reply, rid: str, output: list[Any] | None
) -> dict[str, Any]:
    done = output is not None
    usage = None
    if done:
        inp = count_tokens(body.get("input")) + count_tokens(body.get("instructions") or "")
        out = count_tokens(reply.text or "") + sum(
            count_tokens(c.arguments) + 1 for c in reply.tool_calls
        )
        usage = {
            "input_tokens": inp,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": out,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": inp + out,
        }
    return {
        "id": rid,
        "object": "response",
        "created_at": now(),
        "status": "completed" if done else "in_progress",
        "error": None,
        "incomplete_details": None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "model": body.get("model"),
        "output": output or [],
        "parallel_tool_calls": True,
        "previous_response_id": body.get("previous_response_id"),
        "temperature": body.get("temperature", 1.0),
        "text": body.get("text") or {"format": {"type": "text"}},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [],
        "top_p": body.get("top_p", 1.0),
        "metadata": body.get("metadata") or {},
        "usage": usage,
    }


def _output_ids(reply: Reply) -> list[str]:
    return [new_id("msg_")] + [new_id("fc_") for _ in reply.tool_calls]


def responses_json(body: dict[str, Any], reply: Reply) -> dict[str, Any]:
    """Return a completed ``response`` object for ``reply``.

    Args:
        body: The request JSON.
        reply: What the model says.

    Returns:
        The response JSON (id ``resp_...``).
    """
    return _response_object(
        body, reply, new_id("resp_"), _responses_output(reply, _output_ids(reply))
    )


def responses_events(body: dict[str, Any], reply: Reply) -> list[Event]:
    """Return the typed SSE events of a streamed Responses API call.

    ``response.created`` and ``response.in_progress``, then per output item
    ``output_item.added`` / content part / text or function-argument deltas /
    ``.done`` events, and ``response.completed`` carrying the full response and usage.

    Args:
        body: The request JSON.
        reply: What the model says.

    Returns:
        The events, in order (every data has ``type`` and ``sequence_number``).
    """
    rid, ids = new_id("resp_"), _output_ids(reply)
    final = _responses_output(reply, ids)
    raw: list[dict[str, Any]] = []
    start = _response_object(body, reply, rid, None)
    raw.append({"type": "response.created", "response": start})
    raw.append({"type": "response.in_progress", "response": start})
    for index, item in enumerate(final):
        where = {"item_id": item["id"], "output_index": index}
        if item["type"] == "message":
            part = item["content"][0]
            raw.append(
                {
                    "type": "response.output_item.added",
                    "output_index": index,
                    "item": {**item, "status": "in_progress", "content": []},
                }
            )
            empty = {**part, "text": ""}
            raw.append(
                {"type": "response.content_part.added", **where, "content_index": 0, "part": empty}
            )
            for piece in split_text(part["text"], reply.chunks):
                raw.append(
                    {
                        "type": "response.output_text.delta",
                        **where,
                        "content_index": 0,
                        "delta": piece,
                        "logprobs": [],
                    }
                )
            raw.append(
                {
                    "type": "response.output_text.done",
                    **where,
                    "content_index": 0,
                    "text": part["text"],
                    "logprobs": [],
                }
            )
            raw.append(
                {"type": "response.content_part.done", **where, "content_index": 0, "part": part}
            )
        else:
            args = item["arguments"]
            added = {**item, "status": "in_progress", "arguments": ""}
            raw.append({"type": "response.output_item.added", "output_index": index, "item": added})
            for piece in split_text(args, max(2, min(reply.chunks, len(args)))):
                raw.append(
                    {"type": "response.function_call_arguments.delta", **where, "delta": piece}
                )
            raw.append(
                {
                    "type": "response.function_call_arguments.done",
                    **where,
                    "name": item["name"],
                    "arguments": args,
                }
            )
        raw.append({"type": "response.output_item.done", "output_index": index, "item": item})
    raw.append(
        {"type": "response.completed", "response": _response_object(body, reply, rid, final)}
    )
    return [(data["type"], {**data, "sequence_number": seq}) for seq, data in enumerate(raw)]


def responses_error_event(sequence_number: int, message: str | None = None) -> Event:
    """Return the Responses API's mid-stream ``error`` event.

    Args:
        sequence_number: The event's sequence number.
        message: Overrides the default message.

    Returns:
        The event.
    """
    data = {
        "type": "error",
        "code": "server_error",
        "message": message or SERVER_ERROR,
        "param": None,
    }
    return ("error", {**data, "sequence_number": sequence_number})
