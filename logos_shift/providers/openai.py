"""The openai SDK (1.66 - 3.x): patch targets and stream assembly."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ._contract import Provider, Target, usage_of

_CHAT = "openai.resources.chat.completions.completions"
_BETA_CHAT = "openai.resources.beta.chat.completions"
_RESP = "openai.resources.responses.responses"
_EMB = "openai.resources.embeddings"


def assemble_chat(chunks: Sequence[Any], record: dict[str, Any]) -> None:
    """Rebuild a ChatCompletion-shaped dict from ``ChatCompletionChunk`` objects.

    Tool-call arguments are concatenated per choice and per tool-call
    ``index`` (parallel calls arrive interleaved).

    Args:
        chunks: the chunks received so far.
        record: the call record to fill.
    """
    choices: dict[int, dict[str, Any]] = {}
    rid = model = None
    usage = None
    for chunk in chunks:
        rid = rid or getattr(chunk, "id", None)
        model = model or getattr(chunk, "model", None)
        if getattr(chunk, "usage", None) is not None:
            usage = usage_of(chunk)
        for ch in getattr(chunk, "choices", None) or ():
            slot = choices.setdefault(
                ch.index, {"role": None, "content": [], "tools": {}, "finish_reason": None}
            )
            delta = ch.delta
            if delta is not None:
                slot["role"] = slot["role"] or getattr(delta, "role", None)
                if getattr(delta, "content", None):
                    slot["content"].append(delta.content)
                for tc in getattr(delta, "tool_calls", None) or ():
                    call = slot["tools"].setdefault(
                        tc.index, {"id": None, "type": "function", "name": None, "arguments": []}
                    )
                    call["id"] = call["id"] or tc.id
                    fn = tc.function
                    if fn is not None:
                        call["name"] = call["name"] or fn.name
                        if fn.arguments:
                            call["arguments"].append(fn.arguments)
            if ch.finish_reason is not None:
                slot["finish_reason"] = ch.finish_reason
    out_choices = []
    for index in sorted(choices):
        slot = choices[index]
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
        "id": rid,
        "object": "chat.completion",
        "model": model,
        "choices": out_choices,
    }
    record["served_model"] = model
    record["response_id"] = rid
    record["usage"] = usage


def assemble_responses(chunks: Sequence[Any], record: dict[str, Any]) -> None:
    """Fill the record from Responses API stream events.

    The final ``response.completed`` / ``incomplete`` / ``failed`` event carries
    the whole Response; without it (a partial stream) the text deltas are kept.

    Args:
        chunks: the events received so far.
        record: the call record to fill.
    """
    final = None
    started = None
    text: list[str] = []
    for ev in chunks:
        kind = getattr(ev, "type", None)
        if kind == "response.output_text.delta":
            text.append(ev.delta)
        elif kind == "response.created":
            started = ev.response
        elif kind in ("response.completed", "response.incomplete", "response.failed"):
            final = ev.response
    head = final if final is not None else started
    if head is not None:
        record["served_model"] = getattr(head, "model", None)
        record["response_id"] = getattr(head, "id", None)
    if final is not None:
        record["output"] = final
        record["usage"] = usage_of(final)
    else:
        record["output"] = {"output_text": "".join(text), "status": "incomplete"}


def usage_only(chunk: Any) -> bool:
    """True for the chat chunk ``include_usage`` appends (no choices).

    Args:
        chunk: a stream chunk.

    Returns:
        Whether it carries only usage.
    """
    return getattr(chunk, "object", None) == "chat.completion.chunk" and not chunk.choices


def _targets() -> tuple[Target, ...]:
    out: list[Target] = []
    for cls in ("Completions", "AsyncCompletions"):
        out.append(Target(_CHAT, cls, "create", "openai.chat.completions", assemble_chat))
        out.append(
            Target(_CHAT, cls, "parse", "openai.chat.completions", assemble_chat, optional=True)
        )
        # openai 1.x: parse lives in beta (stream() there goes through create).
        out.append(
            Target(
                _BETA_CHAT, cls, "parse", "openai.chat.completions", assemble_chat, optional=True
            )
        )
    for cls in ("Responses", "AsyncResponses"):
        out.append(Target(_RESP, cls, "create", "openai.responses", assemble_responses))
        out.append(
            Target(_RESP, cls, "parse", "openai.responses", assemble_responses, optional=True)
        )
    for cls in ("Embeddings", "AsyncEmbeddings"):
        out.append(Target(_EMB, cls, "create", "openai.embeddings", assemble_chat))
    return tuple(out)


PROVIDER = Provider(
    name="openai",
    package="openai",
    min_version=(1, 66),
    max_version=(4,),
    targets=_targets(),
    usage_only=usage_only,
    stream_usage_sources=frozenset({"openai.chat.completions"}),
)
