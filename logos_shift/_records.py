"""The record schema shared by the client, the local JSONL copy and the server.

A record is a plain ``dict`` on the caller's thread (cheap to build) and is
turned into JSON on the background thread.  ``SCHEMA_VERSION`` is written in
every record as ``"schema"``; the server refuses versions it does not know.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any

from . import _context, _guard, _ids

SCHEMA_VERSION = 1

#: Fields of a ``call`` record, in the order they are written.
CALL_FIELDS: tuple[str, ...] = (
    "schema", "type", "id", "ts", "dataset", "source", "function", "input", "output",
    "error", "provider", "requested_model", "served_model", "route", "variant",
    "fallback", "response_id", "usage", "latency_ms", "ttft_ms", "stream", "metadata", "sdk",
)  # fmt: skip

#: Fields of a ``feedback`` record, in the order they are written.
FEEDBACK_FIELDS: tuple[str, ...] = (
    "schema",
    "type",
    "id",
    "ts",
    "target",
    "outcome",
    "score",
    "comment",
    "metadata",
)

OUTCOMES: tuple[str, ...] = ("success", "failure", "neutral")

DEFAULT_DATASET = "default"

# Set by the client module: hands a finished record to the right instance.
_submit: Callable[[dict[str, Any], int], bool] | None = None


def new_call(source: str, provider: str | None = None) -> dict[str, Any]:
    """Start a ``call`` record with id, timestamp and the current context.

    ``ts`` holds ``time.time()`` here; the background thread formats it.
    ``dataset``, ``function`` and ``metadata`` come from the current
    :mod:`logos_shift._context` scope.
    """
    scope = _context.current()
    return {
        "schema": SCHEMA_VERSION,
        "type": "call",
        "id": _ids.new_id(),
        "ts": time.time(),
        "dataset": scope.dataset or DEFAULT_DATASET,
        "source": source,
        "function": scope.function,
        "input": None,
        "output": None,
        "error": None,
        "provider": provider,
        "requested_model": None,
        "served_model": None,
        "route": None,
        "variant": None,
        "fallback": False,
        "response_id": None,
        "usage": None,
        "latency_ms": None,
        "ttft_ms": None,
        "stream": None,
        "metadata": dict(scope.metadata) if scope.metadata else {},
        "sdk": None,
    }


def new_feedback(
    target: str,
    outcome: str,
    score: float | None,
    comment: str | None,
    metadata: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """Build a ``feedback`` record (arguments already validated)."""
    return {
        "schema": SCHEMA_VERSION,
        "type": "feedback",
        "id": _ids.new_id(),
        "ts": time.time(),
        "target": target,
        "outcome": outcome,
        "score": score,
        "comment": comment,
        "metadata": dict(metadata) if metadata else {},
    }


def error_info(exc: BaseException) -> dict[str, Any]:
    """Describe an exception as the record's ``error`` field."""
    status = getattr(exc, "status_code", None)
    if not isinstance(status, int):
        status = None
    try:
        message = str(exc)
    except Exception:  # noqa: BLE001 - a broken __str__ must not lose the record
        message = f"<unprintable {type(exc).__name__}>"
    return {"type": type(exc).__name__, "message": message, "status": status}


# The last whole second formatted, and its "YYYY-MM-DDTHH:MM:SS." prefix:
# records come in time order, so most share the second of the previous one.
# One tuple, replaced whole, so concurrent callers never see a torn pair.
_last_second: tuple[float, str] = (-1.0, "")


def format_ts(ts: float) -> str:
    """Format epoch seconds as the schema's UTC ISO-8601 string with ms.

    Same result as ``datetime.fromtimestamp(ts, tz=timezone.utc)`` formatted
    with ``strftime`` (microseconds rounded half-even, as ``datetime`` does,
    then truncated to milliseconds), with the date part cached per second.
    """
    global _last_second
    frac, whole = math.modf(ts)
    us = round(frac * 1e6)
    if us >= 1_000_000:
        whole += 1.0
        us -= 1_000_000
    elif us < 0:
        whole -= 1.0
        us += 1_000_000
    second, prefix = _last_second
    if whole != second:
        dt = datetime.fromtimestamp(whole, tz=timezone.utc)
        prefix = dt.strftime("%Y-%m-%dT%H:%M:%S.")
        _last_second = (whole, prefix)
    return f"{prefix}{us // 1000:03d}Z"


def submit(record: dict[str, Any], size: int = 2048) -> bool:
    """Hand a finished record to the current instance; never raises.

    The record goes to the instance whose decorated function is running, else
    to the default instance (the one :func:`logos_shift.init` made).

    Args:
        record: a record dict (values may be any Python objects).
        size: estimated JSON size in bytes, for the memory bound.

    Returns:
        True if the record was queued, False if there is no instance or it was
        dropped.
    """
    fn = _submit
    if fn is None:
        return False
    ok = False
    with _guard.guard("submit"):
        ok = fn(record, size)
    return ok
