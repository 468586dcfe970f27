"""Per-call context: dataset and metadata that ride along with captures.

Kept in :mod:`contextvars` so the values follow threads started with
``contextvars.copy_context()`` and every asyncio task, and never leak between
concurrent requests.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any


class Scope:
    """The dataset and metadata in force for captures made now.

    A plain ``__slots__`` class (not a dataclass): one is built per decorated
    call, and on the hot path every hundred nanoseconds counts.  Treat it as
    immutable.
    """

    __slots__ = ("client", "dataset", "function", "metadata")

    def __init__(
        self,
        dataset: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        function: str | None = None,
        client: Any = None,
    ) -> None:
        self.dataset = dataset
        self.metadata: Mapping[str, Any] = metadata if metadata is not None else {}
        #: The ``module:qualname`` of the innermost decorated function, if any.
        self.function = function
        #: The LogosShift instance whose decorated function is running.
        self.client = client


_EMPTY = Scope()
_scope: ContextVar[Scope] = ContextVar("logos_shift_scope", default=_EMPTY)
_last_id: ContextVar[str | int | None] = ContextVar("logos_shift_last_id", default=None)


def current() -> Scope:
    """Return the scope in force for the current thread or task."""
    return _scope.get()


@contextmanager
def push(
    dataset: str | None = None,
    function: str | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> Iterator[Scope]:
    """Enter a nested scope; inner values override outer ones."""
    outer = _scope.get()
    merged: Mapping[str, Any]
    if metadata:
        merged = {**outer.metadata, **metadata} if outer.metadata else dict(metadata)
    else:
        merged = outer.metadata
    inner = Scope(
        dataset=dataset if dataset is not None else outer.dataset,
        metadata=merged,
        function=function if function is not None else outer.function,
        client=outer.client,
    )
    token = _scope.set(inner)
    try:
        yield inner
    finally:
        _scope.reset(token)


def set_last_call_id(call_id: str | int) -> None:
    """Remember the id of the call captured last in this thread or task.

    An ``int`` (from :func:`logos_shift._ids.new_int`) is formatted only when
    somebody asks, keeping the formatting off the hot path.
    """
    _last_id.set(call_id)


def last_call_id() -> str | None:
    """Return the logos-shift id of the last call captured in this context.

    Works for any result, including ones that cannot carry an id (ints,
    strings, SDK objects).  The value is per thread and per asyncio task.

    Returns:
        The id, or ``None`` when nothing was captured in this context yet.

    Example:
        >>> import logos_shift
        >>> logos_shift.last_call_id() is None or isinstance(logos_shift.last_call_id(), str)
        True
    """
    value = _last_id.get()
    if type(value) is int:
        from ._ids import format_id

        return format_id(value)
    return value  # type: ignore[return-value]
