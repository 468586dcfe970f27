"""The declarative contract every SDK provider fills in.

A provider says *what* to patch and how to read the SDK's objects; the
wrapping, stream, guard and routing machinery lives in the capture core
(:mod:`logos_shift._capture`), shared by all providers.  Extractors run
inside guarded steps, so a provider bug never reaches the caller.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from logos_shift._capture.record import Builder, LazyOutput
from logos_shift._capture.streams import Accumulator, Assembler


@dataclass(frozen=True)
class Target:
    """One SDK method to wrap.

    Attributes:
        module: the module that defines the resource class.
        cls: the class name (``Async*`` classes are wrapped with the async wrapper).
        method: the method name.
        source: the record's ``source``.
        kind: ``"call"`` (returns a response or a stream), ``"stream_manager"``
            (returns a helper manager whose request runs on ``__enter__``) or
            ``"generator"`` (returns a plain iterator, or for an async target a
            coroutine giving an async iterator, whose request runs on the first
            ``next()``; the user gets a wrapping generator).
        assemble: makes the accumulator that turns this method's stream chunks
            into the record.
        build: how to turn this method's (non-stream) response into the record's
            ``output`` (on the background thread); None keeps the whole response.
        usage_keys: the response's ``usage`` field names for input and output tokens.
        optional: missing in some supported SDK versions; skipped quietly.
        head: the response's attribute names for the served model, the response
            id and the usage object (read on the caller's thread).
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
    head: tuple[str, str, str] = ("model", "id", "usage")

    @property
    def is_async(self) -> bool:
        """True for the async resource classes (detected by class, not coroutine-ness)."""
        return self.cls.startswith("Async")


@dataclass(frozen=True)
class Provider:
    """A supported SDK.

    Attributes:
        name: the registered name (also the record's ``provider``).
        package: the importable package (``"google.genai"``).
        distribution: the distribution name when it differs (``"google-genai"``);
            also the name of logos-shift's extra for it.
        min_version: the oldest supported version (inclusive).
        max_version: the first unsupported version (exclusive).
        targets: the methods to wrap.
        usage_only: ``usage_only(chunk)`` is true for the usage-only chunk that
            ``stream_options.include_usage`` adds (hidden when logos_shift injected it).
        stream_usage_sources: the record sources whose streams get ``include_usage``.
        stream_classes: names of the SDK package's stream classes (a result of one is
            captured as a stream).
        placeholders: names of the SDK package's "argument not given" classes (``Omit``,
            ``NotGiven``): such arguments are left out of the record, as the SDK leaves
            them out of the request.
        model_base: name of the SDK package's response base class; ``logos_shift_id``
            is installed there as a descriptor, so it stays out of the response's data.
        was_sent: ``was_sent(exc)`` is false for an exception the SDK raised before
            sending anything (a client-side refusal, which records nothing); None
            records every exception.
        derive_endpoint: ``derive_endpoint(resource, base_url, api_key)`` returns
            an SDK resource like ``resource`` on a client derived from the
            caller's for another endpoint (``api_key`` ``None`` keeps the
            caller's key), so a route variant with a ``base_url`` can be
            served there; ``None`` means this SDK cannot (such variants then
            keep the caller's model and endpoint, with a warning).
        scrub: ``scrub(kwargs)`` gives the request as recorded (drop transport
            options that may carry secrets, trim SDK objects); None records the
            kwargs as they are (minus ``extra_headers`` & co.).
        distribution: the distribution name when it differs from ``package``
            (``google-genai`` for ``google.genai``), recorded as the SDK's name.
    """

    name: str
    package: str
    min_version: tuple[int, ...]
    max_version: tuple[int, ...]
    targets: tuple[Target, ...]
    usage_only: Callable[[Any], bool] | None = None
    stream_usage_sources: frozenset[str] = field(default_factory=frozenset)
    derive_endpoint: Callable[[Any, str, str | None], Any] | None = None
    stream_classes: tuple[str, ...] = ("Stream", "AsyncStream")
    placeholders: tuple[str, ...] = ()
    model_base: str | None = None
    was_sent: Callable[[BaseException], bool] | None = None
    distribution: str | None = None
    scrub: Callable[[dict[str, Any]], dict[str, Any]] | None = None

    @property
    def dist(self) -> str:
        """The distribution name (``package`` unless ``distribution`` says otherwise)."""
        return self.distribution or self.package


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


__all__ = [
    "Accumulator",
    "Assembler",
    "Builder",
    "LazyOutput",
    "Provider",
    "Target",
    "parse_version",
]
