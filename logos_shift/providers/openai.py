"""The openai SDK (1.66 - 3.x): patch targets and stream assembly."""

from __future__ import annotations

from typing import Any

from . import _stainless
from .base import Provider, Target

_CHAT = "openai.resources.chat.completions.completions"
_BETA_CHAT = "openai.resources.beta.chat.completions"
_RESP = "openai.resources.responses.responses"
_EMB = "openai.resources.embeddings"


def _chat_usage(usage: Any) -> dict[str, Any]:
    return {
        "input_tokens": getattr(usage, "prompt_tokens", None),
        "output_tokens": getattr(usage, "completion_tokens", None),
    }


class ChatAccumulator:
    """Rebuilds a ChatCompletion-shaped output from ``ChatCompletionChunk`` objects.

    Tool-call arguments are concatenated per choice and per tool-call
    ``index`` (parallel calls arrive interleaved).  The output has the shape
    :func:`build_chat` gives a non-stream response.
    """

    __slots__ = ("choices", "id", "model", "usage")

    def __init__(self) -> None:
        self.choices: dict[int, dict[str, Any]] = {}
        self.id: Any = None
        self.model: Any = None
        self.usage: Any = None

    def add(self, chunk: Any) -> None:
        """Fold one chunk in (see :class:`~logos_shift.providers.base.Accumulator`)."""
        # Fields are read from the models' __dict__: a plain dict lookup, several
        # times cheaper than attribute access on a pydantic model.
        d = chunk.__dict__
        if self.id is None:
            self.id = d.get("id")
        if self.model is None:
            self.model = d.get("model")
        usage = d.get("usage")
        if usage is not None:
            self.usage = _chat_usage(usage)
        for ch in d.get("choices") or ():
            c = ch.__dict__
            index = c.get("index")
            slot = self.choices.get(index)
            if slot is None:
                slot = self.choices[index] = {
                    "role": None, "content": [], "tools": {}, "finish_reason": None,
                }  # fmt: skip
            delta = c.get("delta")
            if delta is not None:
                dd = delta.__dict__
                if slot["role"] is None:
                    slot["role"] = dd.get("role")
                text = dd.get("content")
                if text:
                    slot["content"].append(text)
                calls = dd.get("tool_calls")
                if calls:
                    self._tools(slot["tools"], calls)
            reason = c.get("finish_reason")
            if reason is not None:
                slot["finish_reason"] = reason

    @staticmethod
    def _tools(tools: dict[int, dict[str, Any]], calls: Any) -> None:
        for tc in calls:
            call = tools.get(tc.index)
            if call is None:
                call = tools[tc.index] = {
                    "id": None, "type": "function", "name": None, "arguments": [],
                }  # fmt: skip
            call["id"] = call["id"] or tc.id
            fn = tc.function
            if fn is not None:
                call["name"] = call["name"] or fn.name
                if fn.arguments:
                    call["arguments"].append(fn.arguments)

    def fill(self, record: dict[str, Any]) -> None:
        """Set the record's output, ids and usage."""
        out_choices = []
        for index in sorted(self.choices):
            slot = self.choices[index]
            message: dict[str, Any] = {
                "role": slot["role"] or "assistant",
                "content": "".join(slot["content"]) if slot["content"] else None,
            }
            if slot["tools"]:
                message["tool_calls"] = [
                    {
                        "id": t["id"],
                        "type": t["type"],
                        "function": {"name": t["name"], "arguments": "".join(t["arguments"])},
                    }
                    for _, t in sorted(slot["tools"].items())
                ]
            out_choices.append(
                {"index": index, "message": message, "finish_reason": slot["finish_reason"]}
            )
        record["output"] = {
            "id": self.id,
            "object": "chat.completion",
            "model": self.model,
            "choices": out_choices,
        }
        record["served_model"] = self.model
        record["response_id"] = self.id
        record["usage"] = self.usage


def _tool_call(tc: Any) -> Any:
    fn = getattr(tc, "function", None)
    if fn is None:  # a custom tool call (openai >= 1.99): keep it whole
        return tc
    return {
        "id": tc.id,
        "type": getattr(tc, "type", "function"),
        "function": {"name": fn.name, "arguments": fn.arguments},
    }


def build_chat(resp: Any) -> dict[str, Any]:
    """The output of a non-stream chat completion: the choices' messages, nothing else.

    Same shape as a stream's (:class:`ChatAccumulator`): ``{id, object, model, choices:
    [{index, message: {role, content, tool_calls?, refusal?, parsed?},
    finish_reason}]}`` (usage, ids and the served model are record fields).

    Args:
        resp: a ``ChatCompletion`` (or ``ParsedChatCompletion``).

    Returns:
        The output dict.
    """
    choices = []
    for ch in resp.choices:
        m = ch.message
        message: dict[str, Any] = {"role": m.role, "content": m.content}
        extra = m.__dict__
        calls = extra.get("tool_calls")
        if calls:
            message["tool_calls"] = [_tool_call(tc) for tc in calls]
        if extra.get("refusal") is not None:
            message["refusal"] = extra["refusal"]
        if extra.get("parsed") is not None:
            message["parsed"] = extra["parsed"]
        if extra.get("function_call") is not None:
            message["function_call"] = extra["function_call"]
        choices.append({"index": ch.index, "message": message, "finish_reason": ch.finish_reason})
    return {"id": resp.id, "object": "chat.completion", "model": resp.model, "choices": choices}


def build_response(resp: Any) -> dict[str, Any]:
    """The output of a Responses API call: its output items and status.

    Args:
        resp: a ``Response`` (or ``ParsedResponse``).

    Returns:
        ``{id, object, model, status, output: [items]}``; the items are kept
        whole (messages, function calls, reasoning), serialised as the SDK does.
    """
    return {
        "id": resp.id,
        "object": "response",
        "model": resp.model,
        "status": getattr(resp, "status", None),
        "output": list(resp.output or ()),
    }


class ResponsesAccumulator:
    """Fills the record from Responses API stream events.

    The final ``response.completed`` / ``incomplete`` / ``failed`` event carries
    the whole Response; without it (a partial stream) the text deltas are kept.
    """

    __slots__ = ("final", "started", "text")

    def __init__(self) -> None:
        self.final: Any = None
        self.started: Any = None
        self.text: list[str] = []

    def add(self, ev: Any) -> None:
        """Fold one event in (see :class:`~logos_shift.providers.base.Accumulator`)."""
        kind = getattr(ev, "type", None)
        if kind == "response.output_text.delta":
            self.text.append(ev.delta)
        elif kind == "response.created":
            self.started = ev.response
        elif kind in _FINAL:
            self.final = ev.response

    def fill(self, record: dict[str, Any]) -> None:
        """Set the record's output, ids and usage."""
        final = self.final
        head = final if final is not None else self.started
        if head is not None:
            record["served_model"] = getattr(head, "model", None)
            record["response_id"] = getattr(head, "id", None)
        if final is None:
            record["output"] = {"output_text": "".join(self.text), "status": "incomplete"}
            return
        usage = getattr(final, "usage", None)
        if usage is not None:
            record["usage"] = {
                "input_tokens": getattr(usage, "input_tokens", None),
                "output_tokens": getattr(usage, "output_tokens", None),
            }
        record["output"] = build_response(final)


_FINAL = ("response.completed", "response.incomplete", "response.failed")


def usage_only(chunk: Any) -> bool:
    """True for the chat chunk ``include_usage`` appends (no choices).

    Args:
        chunk: a stream chunk.

    Returns:
        Whether it carries only usage.
    """
    return getattr(chunk, "object", None) == "chat.completion.chunk" and not chunk.choices


def _chat(module: str, cls: str, method: str, optional: bool = False) -> Target:
    return Target(module, cls, method, "openai.chat.completions", ChatAccumulator,
                  optional=optional, build=build_chat,
                  usage_keys=("prompt_tokens", "completion_tokens"))  # fmt: skip


def _targets() -> tuple[Target, ...]:
    out: list[Target] = []
    for cls in ("Completions", "AsyncCompletions"):
        out.append(_chat(_CHAT, cls, "create"))
        out.append(_chat(_CHAT, cls, "parse", optional=True))
        # openai 1.x: parse lives in beta (stream() there goes through create).
        out.append(_chat(_BETA_CHAT, cls, "parse", optional=True))
    for cls in ("Responses", "AsyncResponses"):
        r = "openai.responses"
        out.append(Target(_RESP, cls, "create", r, ResponsesAccumulator, build=build_response))
        out.append(
            Target(
                _RESP, cls, "parse", r, ResponsesAccumulator, optional=True, build=build_response
            )
        )
    for cls in ("Embeddings", "AsyncEmbeddings"):
        # The whole response is the output (the vectors); usage has prompt_tokens only.
        out.append(
            Target(_EMB, cls, "create", "openai.embeddings", ChatAccumulator,
                   usage_keys=("prompt_tokens", "completion_tokens"))
        )  # fmt: skip
    return tuple(out)


PROVIDER = Provider(
    name="openai",
    package="openai",
    min_version=(1, 66),
    max_version=(4,),
    targets=_targets(),
    placeholders=_stainless.PLACEHOLDERS,
    model_base=_stainless.MODEL_BASE,
    was_sent=_stainless.was_sent,
    usage_only=usage_only,
    stream_usage_sources=frozenset({"openai.chat.completions"}),
    derive_endpoint=_stainless.derive_endpoint,
)
