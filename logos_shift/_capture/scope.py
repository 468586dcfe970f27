"""Scopes and instance resolution: which instance, dataset and metadata a capture gets.

Kept in :mod:`contextvars` so the values follow threads started with
``contextvars.copy_context()`` and every asyncio task, and never leak between
concurrent requests.

Instance resolution is written once, here (:func:`current_instance`), and used
by every entry point: the instance whose decorated function is running, else
the one activated with ``LogosShift.activate()``, else the process default
(the last one made by ``logos_shift.init()``, or the first one constructed).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from logos_shift._ids import format_id

if TYPE_CHECKING:
    from .instance import Instance


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
        #: The instance whose decorated function is running.
        self.client: Instance | None = client


_EMPTY = Scope()
#: The scope in force (hot paths bind ``SCOPE.get`` / ``SCOPE.set`` once).
SCOPE: ContextVar[Scope] = ContextVar("logos_shift_scope", default=_EMPTY)
#: The id of the call captured last in this thread or task (an int until formatted).
LAST_ID: ContextVar[str | int | None] = ContextVar("logos_shift_last_id", default=None)
#: The instance made current by ``LogosShift.activate()``.
ACTIVE: ContextVar[Instance | None] = ContextVar("logos_shift_active", default=None)

_default: Instance | None = None
_default_lock = threading.Lock()


def current() -> Scope:
    """Return the scope in force for the current thread or task."""
    return SCOPE.get()


def current_instance() -> Instance | None:
    """The instance captures made now go to, or ``None`` when there is none.

    The instance whose decorated function is running wins, then the one
    activated with ``LogosShift.activate()``, then the process default.
    """
    return SCOPE.get().client or ACTIVE.get() or _default


def should_capture(inst: Instance | None) -> bool:
    """Whether ``inst`` records anything: the one home of the ``enabled`` setting.

    Every entry point asks this before it captures a call or a feedback: the
    decorator, routed functions, each provider's SDK wrapper and
    ``provide_feedback``.  ``enabled=False`` makes the instance a pass-through:
    calls run unchanged (not routed) and nothing is recorded.
    """
    return inst is not None and inst.settings.enabled


def capturing_instance() -> Instance | None:
    """:func:`current_instance` when it captures (:func:`should_capture`), else ``None``."""
    inst = current_instance()
    return inst if should_capture(inst) else None


def dataset_for(named: str | None, outer: Scope, inst: Instance) -> str:
    """The dataset of a call: the one home of dataset resolution.

    The dataset named on the decorator wins, then the scope's (a
    ``logos_shift.context(dataset=...)`` block or the enclosing decorated
    function), then the instance's ``dataset`` setting (``"default"`` unless set).

    Args:
        named: the decorator's ``dataset`` (``None`` for SDK calls).
        outer: the scope in force when the call starts.
        inst: the instance capturing the call.
    """
    return named or outer.dataset or inst.settings.dataset


def default_instance() -> Instance | None:
    """The process default instance (see :func:`set_default`)."""
    return _default


def set_default(instance: Instance | None) -> Instance | None:
    """Make ``instance`` the process default; return the previous default."""
    global _default
    with _default_lock:
        previous, _default = _default, instance
    return previous


def set_default_if_unset(instance: Instance) -> None:
    """Make ``instance`` the default unless there already is one."""
    global _default
    with _default_lock:
        if _default is None:
            _default = instance


def clear_default(instance: Instance) -> None:
    """Forget ``instance`` as the default (it is shutting down)."""
    global _default
    with _default_lock:
        if _default is instance:
            _default = None


@contextmanager
def push(
    dataset: str | None = None,
    function: str | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> Iterator[Scope]:
    """Enter a nested scope; inner values override outer ones."""
    outer = SCOPE.get()
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
    token = SCOPE.set(inner)
    try:
        yield inner
    finally:
        SCOPE.reset(token)


def set_last_call_id(call_id: str | int) -> None:
    """Remember the id of the call captured last in this thread or task.

    An ``int`` (from :func:`logos_shift._ids.new_int`) is formatted only when
    somebody asks, keeping the formatting off the hot path.
    """
    LAST_ID.set(call_id)


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
    value = LAST_ID.get()
    if type(value) is int:
        return format_id(value)
    return value  # type: ignore[return-value]
