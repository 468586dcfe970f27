"""Gemini API (``generativelanguage``, ``/v1beta``) wire format for the fake provider.

Pure functions from a request path and body and a
:class:`~logos_shift.testing._common.Reply` to the JSON the real API sends, so the
installed google-genai SDK runs against the fake unchanged
(``genai.Client(api_key="k", http_options={"base_url": fp.gemini_base_url})``):

* ``POST /v1beta/models/{model}:generateContent`` (and ``/v1/...``, as the SDK 3.x sends)
* ``POST /v1beta/models/{model}:streamGenerateContent?alt=sse`` (``data:`` events,
  the last one with ``finishReason`` and ``usageMetadata``)
* ``POST /v1beta/models/{model}:embedContent`` and ``:batchEmbedContents``

The model is the path's, not the body's.  Errors have Google's shape
(``{"error": {"code", "message", "status"}}``); a mid-stream error is such an
object as one ``data:`` event.
"""

from __future__ import annotations

import json
from typing import Any

from ._common import Event, Reply, ToolCall, count_tokens, new_id, scripted_tool_calls, split_text
from ._openai import _vector

#: The SDK's API versions: ``v1beta`` (1.x, 2.x) and ``v1`` (3.x).
_VERSIONS = ("/v1beta/", "/v1/")
_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}


def parse_path(path: str) -> tuple[str, str] | None:
    """Split ``/v1beta/models/{model}:{method}`` into ``(model, method)``.

    A tuned model's path (``/v1beta/tunedModels/{name}:...``) gives the model
    ``tunedModels/{name}``, as the caller spelled it.

    Args:
        path: The request path without the query string.

    Returns:
        The model and the method (``generateContent``, ``streamGenerateContent``,
        ``embedContent``, ``batchEmbedContents``), or None for another path.
    """
    version = next((v for v in _VERSIONS if path.startswith(v)), None)
    if version is None:
        return None
    name, sep, method = path[len(version) :].rpartition(":")
    if not sep:
        return None
    if name.startswith("models/"):
        name = name[len("models/") :]
    elif not name.startswith("tunedModels/"):
        return None
    return (name, method) if name and "/" not in name.removeprefix("tunedModels/") else None


def error_body(status: int, model: str | None = None, message: str | None = None) -> Any:
    """Return Google's error JSON for an HTTP status.

    Args:
        status: The HTTP status code.
        model: The requested model (used in the 404 message).
        message: Overrides the default message.

    Returns:
        ``{"error": {"code", "message", "status"}}``.
    """
    default = f"models/{model} is not found" if status == 404 else f"Fake error {status}"
    return {
        "error": {
            "code": status,
            "message": message or default,
            "status": _STATUS.get(status, "INTERNAL" if status >= 500 else "FAILED_PRECONDITION"),
        }
    }


def stream_error_data(message: str | None = None) -> Event:
    """Return the error event a failing stream sends mid-way (a 503 ``UNAVAILABLE``).

    Args:
        message: Overrides the default message.

    Returns:
        The event.
    """
    return (None, error_body(503, message=message or "The model is overloaded."))


def _text(contents: Any) -> str:
    if isinstance(contents, dict):
        contents = [contents]
    for content in reversed(contents or []):
        if isinstance(content, dict) and content.get("role", "user") == "user":
            texts = [p.get("text", "") for p in content.get("parts") or [] if isinstance(p, dict)]
            if any(texts):
                return "".join(texts)
    return ""


def plan(body: dict[str, Any], text: str | None, tool_calls: list[dict[str, Any]] | None) -> Reply:
    """Decide the reply: scripted text / function calls, else ``"Echo: <last user text>"``.

    Args:
        body: The request JSON.
        text: Scripted text.
        tool_calls: Scripted function calls (``name``, ``arguments``).

    Returns:
        The reply.
    """
    if tool_calls is not None or text is not None:
        return Reply(text=text, tool_calls=scripted_tool_calls(tool_calls or [], "call_"))
    return Reply(text="Echo: " + _text(body.get("contents")))


def _usage(body: dict[str, Any], out: int) -> dict[str, int]:
    inp = count_tokens(body.get("contents")) + count_tokens(body.get("systemInstruction"))
    return {"promptTokenCount": inp, "candidatesTokenCount": out, "totalTokenCount": inp + out}


def _call_part(call: ToolCall) -> dict[str, Any]:
    return {"functionCall": {"name": call.name, "args": json.loads(call.arguments or "{}")}}


def _reason(reply: Reply) -> str:
    return reply.stop_reason or "STOP"


def generate_json(model: str, body: dict[str, Any], reply: Reply) -> dict[str, Any]:
    """Return the ``generateContent`` response.

    Args:
        model: The model of the path (echoed as ``modelVersion``).
        body: The request JSON.
        reply: What to answer.

    Returns:
        The response JSON.
    """
    parts: list[dict[str, Any]] = []
    if reply.text is not None:
        parts.append({"text": reply.text})
    parts += [_call_part(c) for c in reply.tool_calls]
    out = count_tokens(reply.text or "") + sum(count_tokens(c.arguments) for c in reply.tool_calls)
    return {
        "candidates": [
            {
                "content": {"role": "model", "parts": parts},
                "finishReason": _reason(reply),
                "index": 0,
            }
        ],
        "usageMetadata": _usage(body, out),
        "modelVersion": model,
        "responseId": new_id("gres_"),
    }


def generate_events(model: str, body: dict[str, Any], reply: Reply) -> list[Event]:
    """Return the ``streamGenerateContent?alt=sse`` events.

    The text is split into ``reply.chunks`` events; function calls come whole
    in the last one, which also has ``finishReason`` and ``usageMetadata``.

    Args:
        model: The model of the path.
        body: The request JSON.
        reply: What to answer.

    Returns:
        The events (``(None, data)``).
    """
    rid = new_id("gres_")
    pieces = split_text(reply.text, reply.chunks) if reply.text else []
    events: list[Event] = []
    for piece in pieces:
        events.append(
            (
                None,
                {
                    "candidates": [
                        {"content": {"role": "model", "parts": [{"text": piece}]}, "index": 0}
                    ],
                    "modelVersion": model,
                    "responseId": rid,
                },
            )
        )
    last = generate_json(model, body, reply)
    last["responseId"] = rid
    last["candidates"][0]["content"]["parts"] = [_call_part(c) for c in reply.tool_calls]
    events.append((None, last))
    return events


def embed_json(model: str, method: str, body: dict[str, Any], dims: int) -> dict[str, Any]:
    """Return the ``embedContent`` / ``batchEmbedContents`` response.

    Args:
        model: The model of the path.
        method: ``embedContent`` or ``batchEmbedContents``.
        body: The request JSON.
        dims: Vector size unless the request sets ``outputDimensionality``.

    Returns:
        ``{"embedding": {"values"}}`` or ``{"embeddings": [{"values"}]}``.
    """
    if method == "embedContent":
        size = int(body.get("outputDimensionality") or dims)
        return {"embedding": {"values": _vector(model, _text(body.get("content")), size)}}
    out = []
    for req in body.get("requests") or []:
        size = int(req.get("outputDimensionality") or dims)
        out.append({"values": _vector(model, _text(req.get("content")), size)})
    return {"embeddings": out}
