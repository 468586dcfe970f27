"""The anthropic SDK (0.49 - 2.x): patch targets and stream assembly.

Older releases (< 0.49) build the helper's MessageStream from a fresh Stream
over the raw response, so the helper could not be captured; they are not supported.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ._contract import Provider, Target

_MSG = "anthropic.resources.messages.messages"
_BETA = "anthropic.resources.beta.messages.messages"


def assemble_messages(chunks: Sequence[Any], record: dict[str, Any]) -> None:
    """Rebuild a Message-shaped dict from raw message stream events.

    ``message_delta.usage.output_tokens`` is cumulative, so the last one wins
    (``message_start``'s count is not added).  Tool inputs are joined from
    ``input_json_delta`` pieces per content-block index.

    Args:
        chunks: the events received so far.
        record: the call record to fill.
    """
    msg: dict[str, Any] = {
        "id": None,
        "type": "message",
        "role": "assistant",
        "model": None,
        "content": [],
        "stop_reason": None,
    }
    blocks: dict[int, dict[str, Any]] = {}
    parts: dict[int, list[str]] = {}
    inp = out = None
    for ev in chunks:
        kind = getattr(ev, "type", None)
        if kind == "message_start":
            m = ev.message
            msg["id"], msg["model"] = m.id, m.model
            if m.usage is not None:
                inp, out = m.usage.input_tokens, m.usage.output_tokens
        elif kind == "content_block_start":
            block = ev.content_block.model_dump(mode="json")
            blocks[ev.index] = block
            parts[ev.index] = []
        elif kind == "content_block_delta":
            d = ev.delta
            piece = getattr(d, "text", None)
            if piece is None:
                piece = getattr(d, "partial_json", None)
            if piece is None:
                piece = getattr(d, "thinking", None)
            if piece is not None:
                parts.setdefault(ev.index, []).append(piece)
        elif kind == "message_delta":
            msg["stop_reason"] = getattr(ev.delta, "stop_reason", None)
            u = getattr(ev, "usage", None)
            if u is not None:
                out = u.output_tokens
                if getattr(u, "input_tokens", None) is not None:
                    inp = u.input_tokens
    for index in sorted(blocks):
        block = blocks[index]
        joined = "".join(parts.get(index, ()))
        if block.get("type") == "text":
            block["text"] = block.get("text", "") + joined
        elif block.get("type") == "thinking":
            block["thinking"] = block.get("thinking", "") + joined
        elif joined:
            try:
                block["input"] = json.loads(joined)
            except ValueError:
                block["input"] = joined  # a partial stream cut the JSON short
        msg["content"].append(block)
    record["output"] = msg
    record["served_model"] = msg["model"]
    record["response_id"] = msg["id"]
    if inp is not None or out is not None:
        record["usage"] = {"input_tokens": inp, "output_tokens": out}


def _targets() -> tuple[Target, ...]:
    out: list[Target] = []
    pairs = ((_MSG, "anthropic.messages"), (_BETA, "anthropic.beta.messages"))
    for module, source in pairs:
        for cls in ("Messages", "AsyncMessages"):
            out.append(Target(module, cls, "create", source, assemble_messages))
            out.append(
                Target(module, cls, "stream", source, assemble_messages, kind="stream_manager")
            )
            out.append(Target(module, cls, "parse", source, assemble_messages, optional=True))
    return tuple(out)


PROVIDER = Provider(
    name="anthropic",
    package="anthropic",
    min_version=(0, 49),
    max_version=(3,),
    targets=_targets(),
)
