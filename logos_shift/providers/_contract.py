"""The declarative contract every SDK provider fills in.

A provider says *what* to patch and how to read the SDK's objects; the
wrapping, stream, guard and routing machinery lives in
:mod:`logos_shift._instrument` and :mod:`logos_shift._streamwrap`, shared by
all providers.  Extractors run inside guarded steps, so a provider bug never
reaches the caller.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from logos_shift import _guard


class Accumulator(Protocol):
    """Folds a stream's chunks into the record as they pass, on the caller's thread.

    Each chunk is read once, when the user receives it, and not kept: a
    stream's chunks are freed as promptly as without instrumentation (keeping
    them costs far more than reading them, in allocator and cache traffic and
    garbage-collector work).  Only strings and the few objects the record
    needs are kept.
    """

    def add(self, chunk: Any) -> None:
        """Take the next chunk, in stream order."""

    def fill(self, record: dict[str, Any]) -> None:
        """Set output/usage/served_model/response_id from everything added (maybe partial)."""


#: Makes a fresh :class:`Accumulator` for one stream.
Assembler = Callable[[], Accumulator]
#: ``build(source) -> dict``: the record's ``output`` from a response object (or
#: a stream's chunk list); runs on the background thread, via :class:`LazyOutput`.
Builder = Callable[[Any], dict[str, Any]]


class LazyOutput(MutableMapping[str, Any]):
    """A record's ``output`` that is built when first read, on the background thread.

    The caller's thread only stores the SDK's response object (or the list of
    stream chunks) and the provider's builder; the small output dict (message
    text, tool calls, stop reason, ids) is made when the record is serialised.
    To the serialiser and to a ``redact`` hook it is an ordinary mapping.

    The response is kept by reference, not copied: SDK responses are pydantic
    models that neither the SDK nor, in practice, the application modifies
    after they are returned, and the record is serialised within the flush
    interval (2 s by default).  An application that mutates a response in
    place before then may see the mutation in the record.  Copying it on the
    caller's thread instead would cost a ``model_dump`` per call there.

    A builder that fails (a provider bug, an SDK shape we do not know) never
    loses the record: the output falls back to the serialiser's generic view
    of the source object.
    """

    __slots__ = ("_build", "_data", "_src")

    def __init__(self, build: Builder, src: Any) -> None:
        self._build = build
        self._src = src
        self._data: dict[str, Any] | None = None

    def _get(self) -> dict[str, Any]:
        data = self._data
        if data is None:
            data = {"_logos_shift": "output_unavailable"}
            with _guard.guard("build_output"):
                _guard.fault("build_output")
                data = self._build(self._src)
            if data.get("_logos_shift") == "output_unavailable":
                data = _fallback(self._src)
            self._data = data
            self._src = None
        return data

    def __getitem__(self, key: str) -> Any:
        return self._get()[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._get()[key] = value

    def __delitem__(self, key: str) -> None:
        del self._get()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._get())

    def __len__(self) -> int:
        return len(self._get())

    def __repr__(self) -> str:
        return f"LazyOutput({self._get()!r})"


def _fallback(src: Any) -> dict[str, Any]:
    from logos_shift._serialize import to_jsonable

    value = to_jsonable(src)
    return value if isinstance(value, dict) else {"value": value}


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
        assemble: makes the accumulator that turns this method's stream chunks
            into the record.
        build: how to turn this method's (non-stream) response into the record's
            ``output`` (on the background thread); None keeps the whole response.
        usage_keys: the response's ``usage`` field names for input and output tokens.
        optional: missing in some supported SDK versions; skipped quietly.
    """

    module: str
    cls: str
    method: str
    source: str
    assemble: Assembler
    kind: str = "call"
    optional: bool = False
    build: Builder | None = None
    usage_keys: tuple[str, str] = ("input_tokens", "output_tokens")

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


def fill_from_response(resp: Any, record: dict[str, Any], target: Target) -> None:
    """Fill a non-stream call's record from the SDK response object (caller's thread).

    Reads only the top-level ``model``, ``id`` and ``usage``; the output is a
    :class:`LazyOutput` built on the background thread (or, for targets
    without a builder, the response itself, serialised there).

    Args:
        resp: the parsed SDK response.
        record: the call record to fill.
        target: the patched method, for its output builder and usage field names.
    """
    d = getattr(resp, "__dict__", None)
    if d is None:
        d = {"model": getattr(resp, "model", None), "id": getattr(resp, "id", None),
             "usage": getattr(resp, "usage", None)}  # fmt: skip
    record["served_model"] = d.get("model")
    rid = d.get("id")
    record["response_id"] = rid if isinstance(rid, str) else None
    usage = d.get("usage")
    if usage is not None:
        u = getattr(usage, "__dict__", None)
        if u is None:
            record["usage"] = usage_of(resp)
        else:
            inp, out = target.usage_keys
            record["usage"] = {"input_tokens": u.get(inp), "output_tokens": u.get(out)}
    build = target.build
    record["output"] = resp if build is None else LazyOutput(build, resp)
