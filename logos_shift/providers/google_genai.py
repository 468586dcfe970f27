"""The google-genai SDK (1.20 - 3.x): Gemini API and Vertex AI.

Patched: ``client.models.generate_content`` / ``generate_content_stream`` /
``embed_content`` and their ``client.aio.models`` twins.  Chats
(``client.chats.create(...).send_message`` / ``send_message_stream``) call
those methods, so each chat turn is recorded once.  Streams are plain
(async) generators whose request runs on the first ``next()``
(``Target(kind="generator")``).  ``usage_metadata`` is the record's usage,
``model_version`` its served model and ``response_id`` its response id.
"""

from __future__ import annotations

from typing import Any

from .base import Provider, Target

_MODELS = "google.genai.models"
_HEAD = ("model_version", "response_id", "usage_metadata")
_USAGE = ("prompt_token_count", "candidates_token_count")


def _usage(u: Any) -> dict[str, Any]:
    d = u.__dict__
    return {"input_tokens": d.get(_USAGE[0]), "output_tokens": d.get(_USAGE[1])}


def _reason(value: Any) -> Any:
    # FinishReason is a str enum; its .value is the wire name ("STOP").
    return getattr(value, "value", value)


def _dump(obj: Any) -> Any:
    dump = getattr(obj, "model_dump", None)
    return obj if dump is None else dump(mode="json", exclude_none=True)


def _trim(value: Any) -> Any:
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json", exclude_none=True)
    if isinstance(value, list):
        return [_trim(v) for v in value]
    return value


def scrub(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The request as recorded: ``contents`` and ``config`` without unset fields.

    ``config.http_options`` (headers, base URL, timeouts: transport details
    that may carry an API key) is never recorded.

    Args:
        kwargs: the call's keyword arguments (``model``, ``contents``, ``config``).

    Returns:
        A new dict; the caller's objects are not changed.
    """
    out = dict(kwargs)
    if "contents" in out:
        out["contents"] = _trim(out["contents"])
    config = out.get("config")
    if config is not None:
        config = _trim(config)
        if isinstance(config, dict):
            config = {k: v for k, v in config.items() if k != "http_options"}
        out["config"] = config
    return out


def build_generate(resp: Any) -> dict[str, Any]:
    """The output of a non-stream ``GenerateContentResponse``: its candidates.

    Same shape as a stream's (:class:`GenerateAccumulator`).

    Args:
        resp: a ``GenerateContentResponse``.

    Returns:
        ``{response_id, model_version, candidates: [{index, content: {role,
        parts}, finish_reason}]}``, parts as the API spells them
        (``{"text": ...}``, ``{"function_call": {...}}``).
    """
    candidates = []
    for i, c in enumerate(resp.candidates or ()):
        content = c.content
        candidates.append(
            {
                "index": c.index if c.index is not None else i,
                "content": {
                    "role": getattr(content, "role", None) or "model",
                    "parts": [_dump(p) for p in (getattr(content, "parts", None) or ())],
                },
                "finish_reason": _reason(c.finish_reason),
            }
        )
    return {
        "response_id": resp.response_id,
        "model_version": resp.model_version,
        "candidates": candidates,
    }


def build_embed(resp: Any) -> dict[str, Any]:
    """The output of an ``EmbedContentResponse``: the vectors (no HTTP headers).

    Args:
        resp: an ``EmbedContentResponse``.

    Returns:
        ``{embeddings: [{values, ...}], metadata?}``.
    """
    out: dict[str, Any] = {"embeddings": [_dump(e) for e in resp.embeddings or ()]}
    if getattr(resp, "metadata", None) is not None:
        out["metadata"] = _dump(resp.metadata)
    return out


class GenerateAccumulator:
    """Rebuilds a ``GenerateContentResponse``-shaped output from stream chunks.

    Text parts are joined per candidate; other parts (function calls) are
    kept in order.  ``usage_metadata`` is cumulative, so the last one wins.
    """

    __slots__ = ("candidates", "id", "model", "usage")

    def __init__(self) -> None:
        self.candidates: dict[int, dict[str, Any]] = {}
        self.id: Any = None
        self.model: Any = None
        self.usage: Any = None

    def add(self, chunk: Any) -> None:
        """Fold one chunk in (see :class:`~logos_shift.providers.base.Accumulator`)."""
        d = chunk.__dict__
        if self.id is None:
            self.id = d.get("response_id")
        if self.model is None:
            self.model = d.get("model_version")
        usage = d.get("usage_metadata")
        if usage is not None:
            self.usage = usage
        for i, c in enumerate(d.get("candidates") or ()):
            cd = c.__dict__
            index = cd.get("index")
            if index is None:
                index = i
            slot = self.candidates.get(index)
            if slot is None:
                slot = self.candidates[index] = {"role": None, "parts": [], "finish_reason": None}
            content = cd.get("content")
            if content is not None:
                if slot["role"] is None:
                    slot["role"] = content.role
                for part in content.parts or ():
                    text = part.__dict__.get("text")
                    parts = slot["parts"]
                    if text is not None and not part.__dict__.get("thought"):
                        if parts and isinstance(parts[-1], list):
                            parts[-1].append(text)
                        else:
                            parts.append([text])
                    else:
                        parts.append(part)
            reason = cd.get("finish_reason")
            if reason is not None:
                slot["finish_reason"] = reason

    def fill(self, record: dict[str, Any]) -> None:
        """Set the record's output, ids and usage."""
        candidates = []
        for index in sorted(self.candidates):
            slot = self.candidates[index]
            parts = [
                {"text": "".join(p)} if isinstance(p, list) else _dump(p) for p in slot["parts"]
            ]
            candidates.append(
                {
                    "index": index,
                    "content": {"role": slot["role"] or "model", "parts": parts},
                    "finish_reason": _reason(slot["finish_reason"]),
                }
            )
        record["output"] = {
            "response_id": self.id,
            "model_version": self.model,
            "candidates": candidates,
        }
        record["served_model"] = self.model
        record["response_id"] = self.id
        record["usage"] = None if self.usage is None else _usage(self.usage)


def _targets() -> tuple[Target, ...]:
    out: list[Target] = []
    for cls in ("Models", "AsyncModels"):
        out.append(
            Target(_MODELS, cls, "generate_content", "google_genai.generate_content",
                   GenerateAccumulator, build=build_generate, head=_HEAD, usage_keys=_USAGE)
        )  # fmt: skip
        out.append(
            Target(_MODELS, cls, "generate_content_stream", "google_genai.generate_content",
                   GenerateAccumulator, kind="generator", head=_HEAD, usage_keys=_USAGE)
        )  # fmt: skip
        # The Gemini API reports no usage for embeddings.
        out.append(
            Target(_MODELS, cls, "embed_content", "google_genai.embed_content",
                   GenerateAccumulator, build=build_embed, head=_HEAD, usage_keys=_USAGE)
        )  # fmt: skip
    return tuple(out)


PROVIDER = Provider(
    name="google_genai",
    package="google.genai",
    distribution="google-genai",
    min_version=(1, 20),
    max_version=(4,),
    targets=_targets(),
    stream_classes=(),
    scrub=scrub,
)
