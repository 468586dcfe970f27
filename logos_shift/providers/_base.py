"""The declarative provider contract.

A provider module is data plus pure functions: where to patch (``targets``),
which SDK versions it understands (``min_version``/``max_major``), and how to
read a request, a response and a stream into record fields.  All wrapt,
timing, guard and stream-finalisation machinery lives in
:mod:`logos_shift._patching` and :mod:`logos_shift._streams`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

#: Keys of an SDK call that never reach a record (headers, query, extra body).
SECRET_KWARGS = frozenset({"extra_headers", "extra_query", "extra_body", "timeout"})


@dataclass(frozen=True)
class Target:
    """One method to wrap.

    Attributes:
        module: the module that defines the class (``"openai.resources.embeddings"``).
        name: ``"Class.method"`` inside it.
        source: the record's ``source`` (``"openai.embeddings"``).
        kind: which extractor reads the result (``"chat"``, ``"responses"`` …).
        is_async: the method returns a coroutine.
        manager: the method returns a stream manager whose request runs on enter.
        min_version: the first SDK version with this method (skipped before).
    """

    module: str
    name: str
    source: str
    kind: str
    is_async: bool = False
    manager: bool = False
    min_version: tuple[int, ...] = ()


class Accumulator:
    """Folds stream chunks into the provider's final-message shape.

    ``add`` runs once per chunk on the caller's thread and must be cheap;
    ``fill`` runs once when the stream ends.
    """

    __slots__ = ()

    def add(self, chunk: Any) -> bool:
        """Take one chunk; return True to hide it from the user."""
        raise NotImplementedError

    def fill(self, record: dict[str, Any]) -> None:
        """Write output, served_model, response_id and usage into ``record``."""
        raise NotImplementedError


class Provider:
    """Base class of the built-in providers (class attributes are the data)."""

    name: ClassVar[str] = ""
    dist: ClassVar[str] = ""
    min_version: ClassVar[tuple[int, ...]] = ()
    max_major: ClassVar[int] = 0  # first unsupported major version
    targets: ClassVar[tuple[Target, ...]] = ()

    def request_model(self, kwargs: Mapping[str, Any]) -> Any:
        """The model the caller asked for."""
        return kwargs.get("model")

    def is_stream(self, result: Any) -> bool:
        """Whether ``result`` is one of the SDK's raw stream objects."""
        raise NotImplementedError

    def accumulator(self, kind: str, hide_usage: bool) -> Accumulator:
        """A fresh accumulator for a stream of ``kind`` (``hide_usage``: drop our usage chunk)."""
        raise NotImplementedError

    def fill_response(self, kind: str, result: Any, record: dict[str, Any]) -> None:
        """Write output, served_model, response_id and usage of a non-stream result."""
        raise NotImplementedError

    def want_usage_chunk(self, kind: str, kwargs: dict[str, Any]) -> bool:
        """Ask the provider for a usage chunk the user did not request.

        Mutates ``kwargs`` (a copy) and returns True when a chunk will have to
        be hidden from the user.
        """
        return False


def parse_version(text: str) -> tuple[int, ...]:
    """``"1.66.0"`` → ``(1, 66, 0)``; pre-release suffixes are ignored."""
    out: list[int] = []
    for part in text.split("."):
        digits = ""
        for ch in part:
            if not ch.isdigit():
                break
            digits += ch
        if not digits:
            break
        out.append(int(digits))
    return tuple(out)


def get(obj: Any, name: str, default: Any = None) -> Any:
    """Attribute or key access for SDK objects and plain dicts alike."""
    if isinstance(obj, Mapping):
        return obj.get(name, default)
    return getattr(obj, name, default)
