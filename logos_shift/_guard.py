"""The one place where logos_shift swallows its own errors.

Every internal step on a user's call path runs inside :func:`guard`.  In
production a bug in logos_shift is logged (at most once a minute per step) and
counted, never raised into the user's code.  Under the test suite
``RAISE_INTERNAL`` is switched on, so the same bug fails the test instead of
hiding (Sentry's ``capture_internal_exceptions`` and its test fixture).

Failure injection: :func:`fault` is called at the start of each named internal
step.  Tests register a step name in ``FAULTS`` to make that step raise, and
assert that the user's call is unaffected.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from types import TracebackType

logger = logging.getLogger("logos_shift")

#: When true, errors inside :func:`guard` propagate (set by the test suite).
RAISE_INTERNAL = False

#: Step names that :func:`fault` makes raise (failure injection in tests).
FAULTS: set[str] = set()

#: How many internal errors each step swallowed in this process.
ERRORS: Counter[str] = Counter()

_last_logged: dict[str, float] = {}
_log_lock = threading.Lock()


class InjectedFault(RuntimeError):
    """Raised by :func:`fault` for a step listed in ``FAULTS``."""


def fault(step: str) -> None:
    """Raise :class:`InjectedFault` if a test asked ``step`` to fail."""
    if FAULTS and step in FAULTS:
        raise InjectedFault(f"injected fault in {step}")


class guard:  # lower-case: used like a function, ``with guard("step"):``
    """Run an internal step; log and count its errors instead of raising them.

    A class rather than ``@contextmanager``: cheaper on the hot path, and its
    ``__exit__`` returning ``bool`` tells type checkers that the block may be
    cut short, so results assigned inside must be checked afterwards.

    Args:
        step: a short name for the step, used in logs and ``ERRORS``.
    """

    __slots__ = ("step",)

    def __init__(self, step: str) -> None:
        self.step = step

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> bool:  # fmt: skip
        if exc is None:
            return False
        if not isinstance(exc, Exception):
            return False  # KeyboardInterrupt, SystemExit: never ours to swallow
        if RAISE_INTERNAL and not isinstance(exc, InjectedFault):
            return False
        report(self.step)
        return True


def swallow(step: str, exc: Exception) -> None:
    """The rule of :class:`guard` for hand-written ``try``/``except`` blocks.

    Re-raises ``exc`` under the test suite (unless it is an injected fault),
    otherwise reports it.
    """
    if RAISE_INTERNAL and not isinstance(exc, InjectedFault):
        raise exc
    report(step)


def report(step: str) -> None:
    """Count an internal error of ``step`` and log it, at most once a minute."""
    ERRORS[step] += 1
    now = time.monotonic()
    with _log_lock:
        last = _last_logged.get(step)
        if last is not None and now - last < 60.0:
            return
        _last_logged[step] = now
    logger.warning("logos_shift internal error in %s (suppressed)", step, exc_info=True)
