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
from collections.abc import Iterator
from contextlib import contextmanager

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


@contextmanager
def guard(step: str) -> Iterator[None]:
    """Run an internal step; log and count its errors instead of raising them.

    Args:
        step: a short name for the step, used in logs and ``ERRORS``.
    """
    try:
        yield
    except InjectedFault:
        report(step)
    except Exception:  # noqa: BLE001 - the one deliberate swallow of the library
        if RAISE_INTERNAL:
            raise
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
