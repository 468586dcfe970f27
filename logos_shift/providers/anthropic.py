"""The anthropic SDK (0.49 - 2.x): messages and beta messages.

``Messages.stream()`` posts through ``_post`` directly (it bypasses
``create``) and returns a manager whose request runs on ``__enter__``; it is
a ``manager`` target, and the raw stream the manager opens is wrapped, so
``text_stream``, ``get_final_message()`` and ``until_done()`` are covered by
the same finalise-once machinery as a plain ``create(stream=True)``.
"""

from __future__ import annotations

import json
from typing import Any

from ._base import Accumulator, Provider, Target, get

_MSG = "anthropic.resources.messages.messages"
_BETA = "anthropic.resources.beta.messages.messages"


def _targets() -> tuple[Target, ...]:
    out: list[Target] = []
    for module, source in ((_MSG, "anthropic.messages"), (_BETA, "anthropic.beta.messages")):
        for prefix, is_async in (("", False), ("Async", True)):
            out += [
                Target(module, f"{prefix}Messages.create", source, "messages", is_async),
                Target(module, f"{prefix}Messages.parse", source, "messages", is_async),
                # stream() returns its manager synchronously, also on AsyncMessages
                Target(module, f"{prefix}Messages.stream", source, "messages", is_async,
                       manager=True),
            ]  # fmt: skip
    return tuple(out)


def _usage(u: Any) -> dict[str, Any] | None:
    if u is None:
        return None
    return {"input_tokens": get(u, "input_tokens"), "output_tokens": get(u, "output_tokens")}


class MessagesAccumulator(Accumulator):
    """Message stream events → a ``Message``-shaped dict.

    ``message_delta.usage.output_tokens`` is cumulative (the total so far), so
    it replaces rather than adds; input tokens come from ``message_start``
    unless a later delta reports them.
    """

    __slots__ = ("blocks", "message", "stop_reason", "stop_sequence", "usage")

    def __init__(self) -> None:
        self.message: Any = None
        self.blocks: dict[int, dict[str, Any]] = {}
        self.stop_reason: Any = None
        self.stop_sequence: Any = None
        self.usage: dict[str, Any] = {"input_tokens": None, "output_tokens": None}

    def add(self, chunk: Any) -> bool:
        kind = get(chunk, "type")
        if kind == "content_block_delta":
            block = self.blocks.get(get(chunk, "index", 0))
            if block is not None:
                delta = get(chunk, "delta")
                dtype = get(delta, "type")
                if dtype == "text_delta":
                    block["parts"].append(get(delta, "text") or "")
                elif dtype == "input_json_delta":
                    block["parts"].append(get(delta, "partial_json") or "")
                elif dtype == "thinking_delta":
                    block["parts"].append(get(delta, "thinking") or "")
                elif dtype == "signature_delta":
                    block["signature"] = get(delta, "signature")
        elif kind == "content_block_start":
            self.blocks[get(chunk, "index", 0)] = {"start": get(chunk, "content_block"),
                                                   "parts": []}  # fmt: skip
        elif kind == "message_start":
            self.message = get(chunk, "message")
            usage = get(self.message, "usage")
            if usage is not None:
                self.usage = {"input_tokens": get(usage, "input_tokens"),
                              "output_tokens": get(usage, "output_tokens")}  # fmt: skip
        elif kind == "message_delta":
            delta = get(chunk, "delta")
            self.stop_reason = get(delta, "stop_reason")
            self.stop_sequence = get(delta, "stop_sequence")
            usage = get(chunk, "usage")
            if usage is not None:
                out = get(usage, "output_tokens")
                if out is not None:
                    self.usage["output_tokens"] = out
                inp = get(usage, "input_tokens")
                if inp is not None:
                    self.usage["input_tokens"] = inp
        return False

    def fill(self, record: dict[str, Any]) -> None:
        content = []
        for idx in sorted(self.blocks):
            content.append(_block(self.blocks[idx]))
        msg = self.message
        record["output"] = {
            "id": get(msg, "id"), "type": "message", "role": "assistant",
            "model": get(msg, "model"), "content": content,
            "stop_reason": self.stop_reason, "stop_sequence": self.stop_sequence,
            "usage": dict(self.usage),
        }  # fmt: skip
        record["served_model"] = get(msg, "model")
        record["response_id"] = get(msg, "id")
        record["usage"] = dict(self.usage)


def _block(block: dict[str, Any]) -> dict[str, Any]:
    start = block["start"]
    btype = get(start, "type")
    text = "".join(block["parts"])
    if btype == "text":
        return {"type": "text", "text": (get(start, "text") or "") + text}
    if btype in ("tool_use", "server_tool_use"):
        try:
            args = json.loads(text) if text else (get(start, "input") or {})
        except ValueError:
            args = text  # a stream cut inside the JSON keeps the partial text
        return {"type": btype, "id": get(start, "id"), "name": get(start, "name"),
                "input": args}  # fmt: skip
    if btype == "thinking":
        return {"type": "thinking", "thinking": (get(start, "thinking") or "") + text,
                "signature": block.get("signature") or get(start, "signature")}  # fmt: skip
    return {"type": btype, "block": start}


class AnthropicProvider(Provider):
    """anthropic 0.49 up to 2.x."""

    name = "anthropic"
    dist = "anthropic"
    min_version = (0, 49, 0)
    max_major = 3
    targets = _targets()

    def is_stream(self, result: Any) -> bool:
        from anthropic import AsyncStream, Stream

        return isinstance(result, (Stream, AsyncStream))

    def accumulator(self, kind: str, hide_usage: bool) -> Accumulator:
        return MessagesAccumulator()

    def fill_response(self, kind: str, result: Any, record: dict[str, Any]) -> None:
        record["output"] = result
        record["served_model"] = get(result, "model")
        record["response_id"] = get(result, "id")
        record["usage"] = _usage(get(result, "usage"))
