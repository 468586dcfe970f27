"""The declarative contract every SDK provider fills in.

A provider says *what* to patch and how to read the SDK's objects; the
wrapping, stream, guard and routing machinery lives in
:mod:`logos_shift._instrument` and :mod:`logos_shift._streamwrap`, shared by
all providers.  Extractors run inside guarded steps, so a provider bug never
reaches the caller.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

#: ``assemble(chunks, record)``: fill output/usage/served_model/response_id of a
#: stream's record from the chunks the user received (possibly partial).
Assembler = Callable[[Sequence[Any], dict[str, Any]], None]


@dataclass(frozen=True)
class Target:
    """One SDK method to wrap.

    Attributes:
        module: the module that defines the resource class.
        cls: the class name (``Async*`` classes are wrapped with the async wrapper).
        method: the method name.
        source: the record's ``source``.
        kind: ``"call"`` (returns a response or a stream) or ``"stream_manager"``
            (returns a helper manager whose request runs on ``__enter__``).
        assemble: how to turn this method's stream chunks into the record.
        optional: missing in some supported SDK versions; skipped quietly.
    """

    module: str
    cls: str
    method: str
    source: str
    assemble: Assembler
    kind: str = "call"
    optional: bool = False

    @property
    def is_async(self) -> bool:
        """True for the async resource classes (detected by class, not coroutine-ness)."""
        return self.cls.startswith("Async")


@dataclass(frozen=True)
class Provider:
    """A supported SDK.

    Attributes:
        name: ``"openai"`` or ``"anthropic"`` (also the record's ``provider``).
        package: the importable package and distribution name.
        min_version: the oldest supported version (inclusive).
        max_version: the first unsupported version (exclusive).
        targets: the methods to wrap.
        usage_only: ``usage_only(chunk)`` is true for the usage-only chunk that
            ``stream_options.include_usage`` adds (hidden when logos_shift injected it).
        stream_usage_option: the request option that asks for stream usage, if any.
    """

    name: str
    package: str
    min_version: tuple[int, ...]
    max_version: tuple[int, ...]
    targets: tuple[Target, ...]
    usage_only: Callable[[Any], bool] | None = None
    stream_usage_sources: frozenset[str] = field(default_factory=frozenset)


def parse_version(text: str) -> tuple[int, ...]:
    """Parse the leading numeric part of a version string (``"1.66.0rc1"`` → ``(1, 66, 0)``).

    Args:
        text: a version string.

    Returns:
        The numeric components.
    """
    parts: list[int] = []
    for piece in text.split("."):
        digits = ""
        for ch in piece:
            if not ch.isdigit():
                break
            digits += ch
        if not digits:
            break
        parts.append(int(digits))
        if len(digits) != len(piece):
            break
    return tuple(parts)


def usage_of(obj: Any) -> dict[str, Any] | None:
    """Read ``{input_tokens, output_tokens}`` from an SDK object's ``usage``.

    Handles OpenAI chat (``prompt_tokens``/``completion_tokens``), OpenAI
    responses and Anthropic (``input_tokens``/``output_tokens``) and embeddings
    (``prompt_tokens`` only).

    Args:
        obj: an SDK response (or anything with a ``usage`` attribute).

    Returns:
        The usage dict, or None when the object has no usage.
    """
    usage = _field(obj, "usage")
    if usage is None:
        return None
    inp = _field(usage, "input_tokens")
    if inp is None:
        inp = _field(usage, "prompt_tokens")
    out = _field(usage, "output_tokens")
    if out is None:
        out = _field(usage, "completion_tokens")
    return {"input_tokens": inp, "output_tokens": out}


def _field(obj: Any, name: str) -> Any:
    # Read pydantic fields from __dict__: a missing attribute would go through
    # pydantic's __getattr__ and an AttributeError, ~10x slower.
    d = getattr(obj, "__dict__", None)
    if d is not None:
        return d.get(name)
    return getattr(obj, name, None)


def fill_from_response(resp: Any, record: dict[str, Any]) -> None:
    """Fill a non-stream call's record from the SDK response object.

    The object itself becomes ``output``; the background thread serialises it
    with ``model_dump``.

    Args:
        resp: the parsed SDK response.
        record: the call record to fill.
    """
    record["output"] = resp
    record["served_model"] = _field(resp, "model")
    rid = _field(resp, "id")
    record["response_id"] = rid if isinstance(rid, str) else None
    record["usage"] = usage_of(resp)
