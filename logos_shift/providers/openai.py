"""The openai SDK (1.66 - 3.x): chat completions, responses, embeddings.

``parse()`` posts directly (it bypasses ``create``), so it is its own target;
the ``.stream()`` helpers and the ``with_raw_response`` /
``with_streaming_response`` forms all go through ``create``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._base import Accumulator, Provider, Target, get

_CHAT = "openai.resources.chat.completions"
_BETA_CHAT = "openai.resources.beta.chat.completions"
_RESP = "openai.resources.responses"
_EMB = "openai.resources.embeddings"


def _targets() -> tuple[Target, ...]:
    out: list[Target] = []
    for prefix, is_async in (("", False), ("Async", True)):
        out += [
            Target(_CHAT, f"{prefix}Completions.create", "openai.chat.completions", "chat",
                   is_async),
            Target(_CHAT, f"{prefix}Completions.parse", "openai.chat.completions", "chat",
                   is_async),
            # 1.x before 1.92 kept parse() under beta; later versions alias it to the above
            Target(_BETA_CHAT, f"{prefix}Completions.parse", "openai.chat.completions", "chat",
                   is_async),
            Target(_RESP, f"{prefix}Responses.create", "openai.responses", "responses", is_async),
            Target(_RESP, f"{prefix}Responses.parse", "openai.responses", "responses", is_async),
            Target(_EMB, f"{prefix}Embeddings.create", "openai.embeddings", "embeddings",
                   is_async),
        ]  # fmt: skip
    return tuple(out)


def _usage(u: Any) -> dict[str, Any] | None:
    if u is None:
        return None
    inp = get(u, "prompt_tokens")
    if inp is None:
        inp = get(u, "input_tokens")
    out = get(u, "completion_tokens")
    if out is None:
        out = get(u, "output_tokens")
    return {"input_tokens": inp, "output_tokens": out}


class ChatAccumulator(Accumulator):
    """Chat completion chunks → a ``chat.completion``-shaped dict."""

    __slots__ = ("choices", "created", "fingerprint", "hide_usage", "id", "model", "usage")

    def __init__(self, hide_usage: bool) -> None:
        self.hide_usage = hide_usage
        self.choices: dict[int, dict[str, Any]] = {}
        self.id: Any = None
        self.model: Any = None
        self.usage: Any = None
        self.created: Any = None
        self.fingerprint: Any = None

    def add(self, chunk: Any) -> bool:
        if self.id is None:
            self.id = get(chunk, "id")
            self.model = get(chunk, "model")
            self.created = get(chunk, "created")
            self.fingerprint = get(chunk, "system_fingerprint")
        usage = get(chunk, "usage")
        if usage is not None:
            self.usage = usage
        choices = get(chunk, "choices") or ()
        for c in choices:
            idx = get(c, "index", 0)
            slot = self.choices.get(idx)
            if slot is None:
                slot = self.choices[idx] = {"content": [], "tools": {}, "finish": None,
                                            "role": "assistant", "refusal": []}  # fmt: skip
            delta = get(c, "delta")
            if delta is not None:
                text = get(delta, "content")
                if text:
                    slot["content"].append(text)
                refusal = get(delta, "refusal")
                if refusal:
                    slot["refusal"].append(refusal)
                for tc in get(delta, "tool_calls") or ():
                    self._tool(slot["tools"], tc)
            finish = get(c, "finish_reason")
            if finish is not None:
                slot["finish"] = finish
        # the usage-only chunk we asked for (choices == []) is not the user's
        return self.hide_usage and usage is not None and not choices

    @staticmethod
    def _tool(tools: dict[int, dict[str, Any]], tc: Any) -> None:
        idx = get(tc, "index", 0)
        call = tools.get(idx)
        if call is None:
            call = tools[idx] = {"id": None, "type": "function", "name": [], "arguments": []}
        if get(tc, "id"):
            call["id"] = get(tc, "id")
        fn = get(tc, "function")
        if fn is not None:
            if get(fn, "name"):
                call["name"].append(get(fn, "name"))
            if get(fn, "arguments"):
                call["arguments"].append(get(fn, "arguments"))

    def fill(self, record: dict[str, Any]) -> None:
        choices = []
        for idx in sorted(self.choices):
            slot = self.choices[idx]
            msg: dict[str, Any] = {"role": "assistant",
                                   "content": "".join(slot["content"]) or None}  # fmt: skip
            if slot["refusal"]:
                msg["refusal"] = "".join(slot["refusal"])
            if slot["tools"]:
                msg["tool_calls"] = [
                    {"id": t["id"], "type": "function",
                     "function": {"name": "".join(t["name"]),
                                  "arguments": "".join(t["arguments"])}}
                    for _, t in sorted(slot["tools"].items())
                ]  # fmt: skip
            choices.append({"index": idx, "message": msg, "finish_reason": slot["finish"]})
        record["output"] = {"id": self.id, "object": "chat.completion", "created": self.created,
                            "model": self.model, "choices": choices,
                            "usage": self.usage}  # fmt: skip
        record["served_model"] = self.model
        record["response_id"] = self.id
        record["usage"] = _usage(self.usage)


class ResponsesAccumulator(Accumulator):
    """Responses API events → the final ``Response`` (from its last event)."""

    __slots__ = ("response", "text")

    def __init__(self) -> None:
        self.response: Any = None
        self.text: list[str] = []

    def add(self, chunk: Any) -> bool:
        resp = get(chunk, "response")
        if resp is not None:
            self.response = resp
        elif get(chunk, "type") == "response.output_text.delta":
            self.text.append(get(chunk, "delta") or "")
        return False

    def fill(self, record: dict[str, Any]) -> None:
        resp = self.response
        if resp is None:
            if self.text:
                record["output"] = {"output_text": "".join(self.text)}
            return
        status = get(resp, "status")
        if status in ("completed", "incomplete", "failed") or not self.text:
            record["output"] = resp
        else:  # cut short: the last snapshot has no text yet, keep what arrived
            record["output"] = {"id": get(resp, "id"), "model": get(resp, "model"),
                                "status": status, "output_text": "".join(self.text)}  # fmt: skip
        record["served_model"] = get(resp, "model")
        record["response_id"] = get(resp, "id")
        record["usage"] = _usage(get(resp, "usage"))


class OpenAIProvider(Provider):
    """openai 1.66 (first with ``responses``) up to 3.x."""

    name = "openai"
    dist = "openai"
    min_version = (1, 66, 0)
    max_major = 4
    targets = _targets()

    def is_stream(self, result: Any) -> bool:
        from openai import AsyncStream, Stream

        return isinstance(result, (Stream, AsyncStream))

    def accumulator(self, kind: str, hide_usage: bool) -> Accumulator:
        if kind == "responses":
            return ResponsesAccumulator()
        return ChatAccumulator(hide_usage)

    def want_usage_chunk(self, kind: str, kwargs: dict[str, Any]) -> bool:
        if kind != "chat" or not kwargs.get("stream"):
            return False
        opts = kwargs.get("stream_options")
        if isinstance(opts, Mapping) and "include_usage" in opts:
            return False  # the user decided; never override
        kwargs["stream_options"] = {**(opts or {}), "include_usage": True}
        return True

    def fill_response(self, kind: str, result: Any, record: dict[str, Any]) -> None:
        record["output"] = result
        record["served_model"] = get(result, "model")
        if kind != "embeddings":
            record["response_id"] = get(result, "id")
        record["usage"] = _usage(get(result, "usage"))
