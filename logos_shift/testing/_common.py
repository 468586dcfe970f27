"""Pure helpers shared by the fake provider's OpenAI, Anthropic and fine-tuning parts.

Nothing here does I/O: the HTTP layer lives in :mod:`logos_shift.testing`, and the
provider modules turn a request body plus a :class:`Reply` into a JSON body or a
list of server-sent events.  Keeping the wire formats pure makes them easy to read
against the providers' documentation.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

#: One server-sent event: ``(event name or None, data)``; data that is not a
#: string is JSON-encoded on the wire.
Event = tuple["str | None", Any]


@dataclass
class ToolCall:
    """A tool call the fake model makes.

    Attributes:
        name: Function / tool name.
        arguments: JSON-encoded arguments.
        id: Provider-style call id (generated when not scripted).
    """

    name: str
    arguments: str
    id: str = ""


@dataclass
class Reply:
    """What the fake model answers for one inference request.

    Attributes:
        text: Assistant text (``None`` for a tool-call-only answer).
        tool_calls: Tool calls, in order.
        chunks: How many pieces the text (and each tool call's arguments) is
            split into when streaming.
        stop_reason: Provider-specific finish / stop reason override.
        disconnect_after_chunks: Drop the connection after this many SSE events.
        error_after_chunks: Send the provider's mid-stream error event after this
            many SSE events.
        chunk_delay: Seconds to wait between SSE events.
    """

    text: str | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    chunks: int = 5
    stop_reason: str | None = None
    disconnect_after_chunks: int | None = None
    error_after_chunks: int | None = None
    chunk_delay: float = 0.0


def new_id(prefix: str, n: int = 24) -> str:
    """Return a provider-style random id such as ``chatcmpl-3f9a...``.

    Args:
        prefix: Literal prefix, including its separator.
        n: Number of hex characters after the prefix.

    Returns:
        The id.
    """
    return prefix + secrets.token_hex(n // 2 + 1)[:n]


def now() -> int:
    """Return the current Unix time in whole seconds (the providers' ``created``)."""
    return int(time.time())


def count_tokens(value: Any) -> int:
    """Count "tokens" deterministically: whitespace-separated words in every string.

    Args:
        value: A string, or any JSON-like structure whose strings are counted.

    Returns:
        The word count (0 for no text).
    """
    if isinstance(value, str):
        return len(value.split())
    if isinstance(value, dict):
        return sum(count_tokens(v) for k, v in value.items() if k not in ("type", "role"))
    if isinstance(value, (list, tuple)):
        return sum(count_tokens(v) for v in value)
    return 0


def split_text(text: str, n: int) -> list[str]:
    """Split ``text`` into ``n`` consecutive pieces of near-equal length.

    Pieces may be empty when ``text`` has fewer characters than ``n``; joining the
    pieces always gives back ``text``.

    Args:
        text: The text to split.
        n: Number of pieces (at least 1).

    Returns:
        The pieces.
    """
    n = max(1, n)
    size = len(text)
    return [text[i * size // n : (i + 1) * size // n] for i in range(n)]


def text_of(content: Any) -> str:
    """Return the plain text of a message's content (string or list of parts).

    Args:
        content: A message ``content`` value in OpenAI or Anthropic shape.

    Returns:
        The concatenated text parts.
    """
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append(part["text"])
        return " ".join(parts)
    return ""


def example_from_schema(schema: Any, root: Any = None, depth: int = 0) -> Any:
    """Build a value that validates against a simple JSON schema.

    Handles objects (every property is filled in), arrays (one item), scalars,
    ``enum``, ``const``, ``anyOf`` / ``oneOf`` / ``allOf`` and local ``$ref``s, which
    covers the schemas pydantic models and ``pydantic_function_tool`` produce.

    Args:
        schema: The JSON schema.
        root: The document that ``$ref``s resolve against (defaults to ``schema``).
        depth: Recursion depth (recursive schemas stop at ``None``).

    Returns:
        A JSON-compatible example value.
    """
    root = schema if root is None else root
    if not isinstance(schema, dict) or depth > 20:
        return None
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target: Any = root
        for key in ref[2:].split("/"):
            target = target.get(key, {}) if isinstance(target, dict) else {}
        return example_from_schema(target, root, depth + 1)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    if "default" in schema:
        return schema["default"]
    for key in ("anyOf", "oneOf"):
        options = schema.get(key)
        if options:
            non_null = [o for o in options if not (isinstance(o, dict) and o.get("type") == "null")]
            return example_from_schema((non_null or options)[0], root, depth + 1)
    if schema.get("allOf"):
        merged: dict[str, Any] = {}
        for part in schema["allOf"]:
            value = example_from_schema(part, root, depth + 1)
            if isinstance(value, dict):
                merged.update(value)
            else:
                return value
        return merged
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or (kind is None and "properties" in schema):
        props = schema.get("properties") or {}
        return {k: example_from_schema(v, root, depth + 1) for k, v in props.items()}
    if kind == "array":
        item = example_from_schema(schema.get("items", {}), root, depth + 1)
        return [item] * max(1, int(schema.get("minItems", 1)))
    if kind == "integer":
        return int(schema.get("minimum", 1))
    if kind == "number":
        return float(schema.get("minimum", 1.5))
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    if kind == "string":
        return _example_string(schema)
    return None


def _example_string(schema: dict[str, Any]) -> str:
    formats = {
        "date-time": "2024-01-01T00:00:00Z",
        "date": "2024-01-01",
        "time": "00:00:00",
        "email": "fake@example.com",
        "uri": "https://example.com/",
        "uuid": "00000000-0000-4000-8000-000000000000",
    }
    text = formats.get(str(schema.get("format")), "fake")
    return text.ljust(int(schema.get("minLength", 0)), "x")


def scripted_tool_calls(calls: list[dict[str, Any]], id_prefix: str) -> list[ToolCall]:
    """Normalise scripted tool calls (``{"name", "arguments", "id"?}``).

    Args:
        calls: Scripted calls; ``arguments`` may be a dict or a JSON string.
        id_prefix: Prefix for generated ids (``call_`` or ``toolu_``).

    Returns:
        The tool calls.
    """
    out = []
    for call in calls:
        args = call.get("arguments", call.get("input", {}))
        out.append(
            ToolCall(
                name=str(call["name"]),
                arguments=args if isinstance(args, str) else json.dumps(args),
                id=str(call.get("id") or new_id(id_prefix)),
            )
        )
    return out
