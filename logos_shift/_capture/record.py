"""The record schema shared by the client, the local JSONL copy and the server.

A record is a plain ``dict`` on the caller's thread (cheap to build) and is
turned into JSON on the background thread.  ``SCHEMA_VERSION`` is written in
every record as ``"schema"``; the server refuses versions it does not know.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Literal, TypedDict

from logos_shift import _guard, _ids
from logos_shift._transport.serialize import to_jsonable
from logos_shift.routing import fallback as _fallback

from . import scope as _scope

if TYPE_CHECKING:
    from .instance import Instance

SCHEMA_VERSION = 1


class UsageInfo(TypedDict):
    """A call's token usage (``None`` where the provider did not say)."""

    input_tokens: int | None
    output_tokens: int | None


class ErrorInfo(TypedDict):
    """The exception a call raised (or the variant's, after a fallback)."""

    type: str
    message: str
    status: int | None


class StreamInfo(TypedDict):
    """How a streamed call (or a generator) ended."""

    status: Literal["completed", "partial", "error"]
    chunks: int


class SdkInfo(TypedDict):
    """The SDK that made a provider call."""

    name: str
    version: str | None


class CallRecord(TypedDict):
    """A ``call`` record as it is written (the local JSONL copy, the server's ingest).

    The field order here is the order in which records are written.  The
    server's pydantic model (``logos_shift.server.store.records.CallRecord``)
    validates exactly these fields; a test compares the two field by field.
    """

    schema: int
    type: Literal["call"]
    id: str
    ts: str
    dataset: str
    source: str | None
    function: str | None
    input: Any
    output: Any
    error: ErrorInfo | None
    provider: str | None
    requested_model: str | None
    served_model: str | None
    route: str | None
    variant: str | None
    fallback: bool
    response_id: str | None
    usage: UsageInfo | None
    latency_ms: float | None
    ttft_ms: float | None
    stream: StreamInfo | None
    metadata: dict[str, Any]
    sdk: SdkInfo | None


class FeedbackRecord(TypedDict):
    """A ``feedback`` record as it is written."""

    schema: int
    type: Literal["feedback"]
    id: str
    ts: str
    target: str
    outcome: Literal["success", "failure", "neutral"]
    score: float | None
    comment: str | None
    metadata: dict[str, Any]


#: Fields of a ``call`` record, in the order they are written.
CALL_FIELDS: tuple[str, ...] = tuple(CallRecord.__annotations__)

#: Fields of a ``feedback`` record, in the order they are written.
FEEDBACK_FIELDS: tuple[str, ...] = tuple(FeedbackRecord.__annotations__)

OUTCOMES: tuple[str, ...] = ("success", "failure", "neutral")

DEFAULT_DATASET = "default"

#: A new record id (UUIDv7 string); the server uses it for feedback it receives.
new_id = _ids.new_id


def function_call(
    cid: int | str,
    ts: float,
    dataset: str | None,
    function: str,
    inputs: dict[str, Any],
    metadata: Mapping[str, Any],
) -> dict[str, Any]:
    """Start the record of a decorated function's call (the decorator's hot path).

    Holds only what the call knows when it starts; :func:`complete` adds the
    schema's other fields on the background thread.

    Args:
        cid: the call's id (an int from :func:`logos_shift._ids.new_int` until formatted).
        ts: ``time.time()`` at the start.
        dataset: the resolved dataset (:func:`~logos_shift._capture.scope.dataset_for`).
        function: ``module:qualname``.
        inputs: the arguments by name, already snapshotted.
        metadata: the scope's metadata.
    """
    return {"type": "call", "id": cid, "ts": ts, "dataset": dataset, "source": "function",
            "function": function, "input": inputs, "metadata": metadata}  # fmt: skip


def new_call(source: str, provider: str | None, inst: Instance) -> dict[str, Any]:
    """Start a provider call's record with id, timestamp and the current context.

    ``ts`` holds ``time.time()`` here; the background thread formats it.
    ``function`` and ``metadata`` come from the current scope, the dataset
    from :func:`~logos_shift._capture.scope.dataset_for`.

    Args:
        source: the patched method (e.g. ``"openai.chat.completions"``).
        provider: the provider's name.
        inst: the instance capturing the call (for its ``dataset`` setting).
    """
    scope = _scope.current()
    return {
        "schema": SCHEMA_VERSION,
        "type": "call",
        "id": _ids.new_id(),
        "ts": time.time(),
        "dataset": _scope.dataset_for(None, scope, inst),
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
        "ts": time.time(),  # formatted on the background thread
        "target": target,
        "outcome": outcome,
        "score": score,
        "comment": comment,
        "metadata": dict(metadata) if metadata else {},
    }


def error_info(exc: BaseException) -> dict[str, Any]:
    """Describe an exception as the record's ``error`` field."""
    status = _fallback.status_of(exc)
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


def submit(record: dict[str, Any], size: int = 2048, inst: Instance | None = None) -> bool:
    """Hand a finished record to its instance; never raises.

    Args:
        record: a record dict (values may be any Python objects).
        size: estimated JSON size in bytes, for the memory bound.
        inst: the instance that started the capture; ``None`` means the one in
            scope now (:func:`~logos_shift._capture.scope.current_instance`).
            A stream finished after its scope ended still goes to ``inst``.

    Returns:
        True if the record was queued, False if there is no instance or it was
        dropped.
    """
    ok = False
    with _guard.guard("submit"):
        if inst is None:
            inst = _scope.current_instance()
        ok = inst is not None and inst.enqueue(record, size)
    return ok


_DEFAULTS: dict[str, Any] = {"schema": SCHEMA_VERSION, "fallback": False}


def complete(record: dict[str, Any]) -> dict[str, Any]:
    """Return the record with every schema field, in schema order.

    The hot path builds records with only the fields it knows; ids may be
    integers and ``ts`` epoch seconds: both are formatted here.  A dict
    result that gained a ``logos_shift_id`` key for the caller is recorded
    without it.
    """
    fields = FEEDBACK_FIELDS if record.get("type") == "feedback" else CALL_FIELDS
    out = {f: record.get(f, _DEFAULTS.get(f)) for f in fields}
    out["schema"] = SCHEMA_VERSION
    rid = out["id"]
    if type(rid) is int:
        rid = out["id"] = _ids.format_id(rid)
    ts = out["ts"]
    if isinstance(ts, float):
        out["ts"] = format_ts(ts)
    if out.get("metadata") is None:
        out["metadata"] = {}
    for key in ("latency_ms", "ttft_ms"):
        value = out.get(key)
        if type(value) is float:
            out[key] = round(value, 3)
    if out.get("type") == "call":
        if out["dataset"] is None:
            out["dataset"] = DEFAULT_DATASET
        output = out["output"]
        if type(output) is dict and output.get("logos_shift_id") == rid:
            out["output"] = {k: v for k, v in output.items() if k != "logos_shift_id"}
    return out


def prepare(
    record: dict[str, Any],
    capture_content: bool = True,
    redact: Callable[[dict[str, Any]], dict[str, Any] | None] | None = None,
) -> dict[str, Any] | None:
    """The record as it is written: complete, content dropped if asked, redacted.

    Runs on the background thread, once per record, for every destination.

    Args:
        record: a queued record (possibly partial, see :func:`complete`).
        capture_content: ``False`` drops a call's ``input`` and ``output``.
        redact: the user's hook; it sees the complete record and returns it
            (possibly changed) or ``None`` to drop it.

    Returns:
        The record to encode, or ``None`` when ``redact`` dropped it.
    """
    rec = complete(record)
    if not capture_content and rec["type"] == "call":
        rec["input"] = None
        rec["output"] = None
    if redact is not None:
        changed = redact(rec)
        if changed is None:
            return None
        rec = complete(changed) if type(changed) is dict else changed
    return rec


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
                data = _generic_output(self._src)
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


def _generic_output(src: Any) -> dict[str, Any]:
    value = to_jsonable(src)
    return value if isinstance(value, dict) else {"value": value}
