"""The anthropic SDK (0.49 - 2.x): patch targets and stream assembly.

Older releases (< 0.49) build the helper's MessageStream from a fresh Stream
over the raw response, so the helper could not be captured; they are not supported.
"""

from __future__ import annotations

import json
from typing import Any

from . import _stainless
from .base import Provider, Target

_MSG = "anthropic.resources.messages.messages"
_BETA = "anthropic.resources.beta.messages.messages"


class MessageAccumulator:
    """Rebuilds a Message-shaped output from raw message stream events.

    ``message_delta.usage.output_tokens`` is cumulative, so the last one wins
    (``message_start``'s count is not added).  Tool inputs are joined from
    ``input_json_delta`` pieces per content-block index.  The output has the
    shape :func:`build_message` gives a non-stream reply.
    """

    __slots__ = ("blocks", "inp", "msg", "out", "parts")

    def __init__(self) -> None:
        self.msg: dict[str, Any] = {
            "id": None,
            "type": "message",
            "role": "assistant",
            "model": None,
            "content": [],
            "stop_reason": None,
        }
        self.blocks: dict[int, dict[str, Any]] = {}
        self.parts: dict[int, list[str]] = {}
        self.inp: Any = None
        self.out: Any = None

    def add(self, ev: Any) -> None:
        """Fold one event in (see :class:`~logos_shift.providers.base.Accumulator`)."""
        kind = getattr(ev, "type", None)
        if kind == "content_block_delta":
            d = ev.delta
            piece = getattr(d, "text", None)
            if piece is None:
                piece = getattr(d, "partial_json", None)
            if piece is None:
                piece = getattr(d, "thinking", None)
            if piece is not None:
                self.parts.setdefault(ev.index, []).append(piece)
        elif kind == "message_start":
            m = ev.message
            self.msg["id"], self.msg["model"] = m.id, m.model
            if m.usage is not None:
                self.inp, self.out = m.usage.input_tokens, m.usage.output_tokens
        elif kind == "content_block_start":
            self.blocks[ev.index] = ev.content_block.model_dump(mode="json")
            self.parts[ev.index] = []
        elif kind == "message_delta":
            self.msg["stop_reason"] = getattr(ev.delta, "stop_reason", None)
            u = getattr(ev, "usage", None)
            if u is not None:
                self.out = u.output_tokens
                if getattr(u, "input_tokens", None) is not None:
                    self.inp = u.input_tokens

    def fill(self, record: dict[str, Any]) -> None:
        """Set the record's output, ids and usage."""
        msg = dict(self.msg)
        content = []
        for index in sorted(self.blocks):
            block = dict(self.blocks[index])
            joined = "".join(self.parts.get(index, ()))
            if block.get("type") == "text":
                block["text"] = block.get("text", "") + joined
            elif block.get("type") == "thinking":
                block["thinking"] = block.get("thinking", "") + joined
            elif joined:
                try:
                    block["input"] = json.loads(joined)
                except ValueError:
                    block["input"] = joined  # a partial stream cut the JSON short
            content.append(block)
        msg["content"] = content
        record["output"] = msg
        record["served_model"] = msg["model"]
        record["response_id"] = msg["id"]
        if self.inp is not None or self.out is not None:
            record["usage"] = {"input_tokens": self.inp, "output_tokens": self.out}


def build_message(resp: Any) -> dict[str, Any]:
    """The output of a non-stream ``Message``: its content blocks and stop reason.

    Same shape as a stream's (:class:`MessageAccumulator`).

    Args:
        resp: a ``Message`` (or ``ParsedMessage`` / ``BetaMessage``).

    Returns:
        ``{id, type, role, model, content: [blocks], stop_reason}``.
    """
    return {
        "id": resp.id,
        "type": "message",
        "role": resp.role,
        "model": resp.model,
        "content": list(resp.content),
        "stop_reason": resp.stop_reason,
    }


def _targets() -> tuple[Target, ...]:
    out: list[Target] = []
    pairs = ((_MSG, "anthropic.messages"), (_BETA, "anthropic.beta.messages"))
    for module, source in pairs:
        for cls in ("Messages", "AsyncMessages"):
            out.append(
                Target(module, cls, "create", source, MessageAccumulator, build=build_message)
            )
            out.append(
                Target(module, cls, "stream", source, MessageAccumulator, kind="stream_manager",
                       build=build_message)
            )  # fmt: skip
            out.append(
                Target(module, cls, "parse", source, MessageAccumulator, optional=True,
                       build=build_message)
            )  # fmt: skip
    return tuple(out)


PROVIDER = Provider(
    name="anthropic",
    package="anthropic",
    min_version=(0, 49),
    max_version=(3,),
    targets=_targets(),
    derive_endpoint=_stainless.derive_endpoint,
    placeholders=_stainless.PLACEHOLDERS,
    model_base=_stainless.MODEL_BASE,
    was_sent=_stainless.was_sent,
)
