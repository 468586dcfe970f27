"""OpenAI wire formats for the fake provider: chat completions, responses, embeddings.

Pure functions from a request body (and a :class:`~logos_shift.testing._common.Reply`)
to the JSON body or the server-sent events the real API would send, shaped so the
installed openai SDK's helpers (``chat.completions.parse`` / ``stream``,
``responses.parse`` / ``stream``) accept them.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import struct
import urllib.parse
from typing import Any

from ._common import (
    Event,
    Reply,
    ToolCall,
    count_tokens,
    example_from_schema,
    new_id,
    now,
    scripted_tool_calls,
    split_text,
    text_of,
)

SERVER_ERROR = "The server had an error while processing your request. Sorry about that!"


def error_body(status: int, model: str | None = None, message: str | None = None) -> Any:
    """Return OpenAI's error JSON for an HTTP status.

    Args:
        status: The HTTP status code.
        model: The requested model (used in the 404 ``model_not_found`` message).
        message: Overrides the default message.

    Returns:
        ``{"error": {"message", "type", "param", "code"}}``.
    """
    kind, code, text = "invalid_request_error", None, f"Fake error {status}"
    if status == 401:
        code, text = "invalid_api_key", "Incorrect API key provided."
    elif status == 404:
        code = "model_not_found"
        text = f"The model `{model}` does not exist or you do not have access to it."
    elif status == 429:
        kind, code = "requests", "rate_limit_exceeded"
        text = "Rate limit reached (fake provider). Please try again later."
    elif status >= 500:
        kind, text = "server_error", SERVER_ERROR
    return {"error": {"message": message or text, "type": kind, "param": None, "code": code}}


def stream_error_data(message: str | None = None) -> Any:
    """Return the ``data`` of OpenAI's mid-stream error chunk for chat completions."""
    return {
        "error": {
            "message": message or SERVER_ERROR,
            "type": "server_error",
            "param": None,
            "code": None,
        }
    }


def models(path: str, fine_tuned: list[str]) -> tuple[int, Any]:
    """Answer ``GET /v1/models`` (a few base models plus ``fine_tuned``) or ``/v1/models/{id}``.

    Any id can be retrieved, as the fake serves every model name.

    Args:
        path: The request path.
        fine_tuned: Names of the fine-tuned models produced so far.

    Returns:
        ``(200, list or model object)``.
    """

    def model(name: str) -> dict[str, Any]:
        owner = "user-fake" if name.startswith("ft:") else "fake"
        return {"id": name, "object": "model", "created": 0, "owned_by": owner}

    name = path.removeprefix("/v1/models").strip("/")
    if name:
        return 200, model(urllib.parse.unquote(name))
    names = ["gpt-4o-mini", "gpt-4o", "text-embedding-3-small", *fine_tuned]
    return 200, {"object": "list", "data": [model(n) for n in names]}


# ---------------------------------------------------------------------------
# Chat completions


def _last_chat_message(body: dict[str, Any]) -> dict[str, Any]:
    messages = body.get("messages") or []
    return messages[-1] if messages and isinstance(messages[-1], dict) else {}


def last_user_text(items: Any) -> str:
    """Return the text of the last user message (or ``items`` itself when a string).

    Args:
        items: Chat ``messages`` or Responses ``input``.

    Returns:
        The text, or ``""`` when there is no user message.
    """
    if isinstance(items, str):
        return items
    for item in reversed(items or []):
        if isinstance(item, dict) and item.get("role") == "user":
            return text_of(item.get("content"))
    return ""


def _chosen_function(tools: list[Any], choice: Any) -> dict[str, Any] | None:
    """Pick the tool a request forces, or its first function tool; flat or nested shape."""
    functions: list[dict[str, Any]] = []
    for tool in tools:
        if isinstance(tool, dict) and tool.get("type") == "function":
            functions.append(tool.get("function", tool))
    if not functions or choice == "none":
        return None
    if isinstance(choice, dict):
        name = (choice.get("function") or choice).get("name")
        for fn in functions:
            if fn.get("name") == name:
                return fn
    return functions[0]


def plan_reply(
    body: dict[str, Any],
    user_text: str,
    schema: Any,
    tool_result_last: bool,
    text: str | None,
    tool_calls: list[dict[str, Any]] | None,
) -> Reply:
    """Apply the reply rules shared by chat completions and responses.

    Args:
        body: The request JSON (``tools`` / ``tool_choice`` are read).
        user_text: The last user message's text.
        schema: A structured-output JSON schema, if the request asked for one.
        tool_result_last: Whether the conversation ends with a tool result.
        text: Scripted text.
        tool_calls: Scripted tool calls.

    Returns:
        The reply.
    """
    if tool_calls is not None or text is not None:
        return Reply(text=text, tool_calls=scripted_tool_calls(tool_calls or [], "call_"))
    if schema is not None:
        return Reply(text=json.dumps(example_from_schema(schema)))
    fn = (
        None
        if tool_result_last
        else _chosen_function(body.get("tools") or [], body.get("tool_choice"))
    )
    if fn is not None:
        args = json.dumps(example_from_schema(fn.get("parameters") or {"type": "object"}))
        return Reply(
            tool_calls=[ToolCall(name=str(fn.get("name")), arguments=args, id=new_id("call_"))]
        )
    return Reply(text=f"Echo: {user_text}")


def plan_chat(
    body: dict[str, Any], text: str | None = None, tool_calls: list[dict[str, Any]] | None = None
) -> Reply:
    """Decide the reply to a chat completions request.

    Scripted text / tool calls win; then a ``json_schema`` response format gets a
    JSON example of the schema; then a request with tools (unless the last message is
    a tool result or ``tool_choice`` is ``"none"``) gets a call to the forced or
    first tool with example arguments; otherwise ``"Echo: <last user message>"``.

    Args:
        body: The request JSON.
        text: Scripted text.
        tool_calls: Scripted tool calls.

    Returns:
        The reply.
    """
    fmt = body.get("response_format") or {}
    schema = None
    if fmt.get("type") == "json_schema":
        schema = (fmt.get("json_schema") or {}).get("schema") or {"type": "object"}
    elif fmt.get("type") == "json_object":
        schema = {
            "type": "object",
            "properties": {"echo": {"const": last_user_text(body.get("messages"))}},
        }
    last_is_tool = _last_chat_message(body).get("role") == "tool"
    return plan_reply(
        body, last_user_text(body.get("messages")), schema, last_is_tool, text, tool_calls
    )


def _chat_usage(body: dict[str, Any], reply: Reply, n: int) -> dict[str, int]:
    prompt = count_tokens(body.get("messages"))
    completion = n * (
        count_tokens(reply.text or "")
        + sum(count_tokens(c.arguments) + 1 for c in reply.tool_calls)
    )
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _finish(reply: Reply) -> str:
    return reply.stop_reason or ("tool_calls" if reply.tool_calls else "stop")


def chat_json(body: dict[str, Any], reply: Reply) -> dict[str, Any]:
    """Return a ``chat.completion`` object for ``reply``.

    Args:
        body: The request JSON (``model`` is echoed, ``n`` honoured).
        reply: What the model says.

    Returns:
        The response JSON.
    """
    n = int(body.get("n") or 1)
    message: dict[str, Any] = {"role": "assistant", "content": reply.text, "refusal": None}
    if reply.tool_calls:
        message["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in reply.tool_calls
        ]
    return {
        "id": new_id("chatcmpl-"),
        "object": "chat.completion",
        "created": now(),
        "model": body.get("model"),
        "system_fingerprint": "fp_fake",
        "choices": [
            {"index": i, "message": message, "finish_reason": _finish(reply), "logprobs": None}
            for i in range(n)
        ],
        "usage": _chat_usage(body, reply, n),
    }


def chat_events(body: dict[str, Any], reply: Reply) -> list[Event]:
    """Return the SSE events of a streamed chat completion, ending with ``[DONE]``.

    The text is split into ``reply.chunks`` content deltas; each tool call gets a
    header delta (id, name) followed by its arguments split across several deltas
    sharing its ``index``.  With ``stream_options.include_usage`` every chunk carries
    ``usage: null`` and a last usage-only chunk with ``choices: []`` follows.

    Args:
        body: The request JSON.
        reply: What the model says.

    Returns:
        The events, in order.
    """
    n = int(body.get("n") or 1)
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    base: dict[str, Any] = {
        "id": new_id("chatcmpl-"),
        "object": "chat.completion.chunk",
        "created": now(),
        "model": body.get("model"),
        "system_fingerprint": "fp_fake",
    }

    def chunk(index: int, delta: dict[str, Any], finish: str | None = None) -> Event:
        data = {
            **base,
            "choices": [
                {"index": index, "delta": delta, "finish_reason": finish, "logprobs": None}
            ],
        }
        if include_usage:
            data["usage"] = None
        return (None, data)

    events: list[Event] = []
    for i in range(n):
        first = "" if reply.text is not None else None
        events.append(chunk(i, {"role": "assistant", "content": first, "refusal": None}))
        if reply.text is not None:
            events.extend(
                chunk(i, {"content": piece}) for piece in split_text(reply.text, reply.chunks)
            )
        for k, call in enumerate(reply.tool_calls):
            header = {
                "index": k,
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": ""},
            }
            events.append(chunk(i, {"tool_calls": [header]}))
            pieces = split_text(call.arguments, max(2, min(reply.chunks, len(call.arguments))))
            events.extend(
                chunk(i, {"tool_calls": [{"index": k, "function": {"arguments": p}}]})
                for p in pieces
            )
        events.append(chunk(i, {}, _finish(reply)))
    if include_usage:
        events.append((None, {**base, "choices": [], "usage": _chat_usage(body, reply, n)}))
    events.append((None, "[DONE]"))
    return events


# ---------------------------------------------------------------------------
# Embeddings


def _vector(model: str, text: str, dims: int) -> list[float]:
    raw = b""
    counter = 0
    while len(raw) < dims * 4:
        raw += hashlib.sha256(f"{model}\0{text}\0{counter}".encode()).digest()
        counter += 1
    values = [(int.from_bytes(raw[i * 4 : i * 4 + 4], "big") / 2**31) - 1.0 for i in range(dims)]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]


def embeddings_json(body: dict[str, Any], dims: int = 16) -> dict[str, Any]:
    """Return an embeddings list with deterministic unit vectors (hash of model and input).

    Args:
        body: The request JSON (``input`` string / list, ``dimensions``,
            ``encoding_format`` ``float`` or ``base64``).
        dims: Vector size when the request does not set ``dimensions``.

    Returns:
        The response JSON.
    """
    inputs = body.get("input")
    if isinstance(inputs, str) or (
        isinstance(inputs, list) and inputs and isinstance(inputs[0], int)
    ):
        inputs = [inputs]
    size = int(body.get("dimensions") or dims)
    model = str(body.get("model"))
    data = []
    tokens = 0
    for i, item in enumerate(inputs or []):
        text = item if isinstance(item, str) else " ".join(str(t) for t in item)
        tokens += count_tokens(text)
        vec: Any = _vector(model, text, size)
        if body.get("encoding_format") == "base64":
            vec = base64.b64encode(struct.pack(f"<{size}f", *vec)).decode()
        data.append({"object": "embedding", "index": i, "embedding": vec})
    return {
        "object": "list",
        "data": data,
        "model": body.get("model"),
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
