"""One call's capture state, and finalise-once stream wrapping.

The user keeps the SDK's own stream object (``isinstance(s, openai.Stream)``
holds, ``with`` returns it): its ``_iterator`` is swapped for a generator
whose ``finally`` finalises, and an instance ``close`` finalises before
closing the response.  A stream dropped unread is finalised when its
:class:`Call` is collected.  Whichever comes first wins; the rest are no-ops.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Generator, Iterator
from typing import Any

from . import _context, _guard, _records
from .providers._base import Accumulator

_now = time.perf_counter


class Call:
    """The record of one SDK call while it is in flight."""

    __slots__ = (
        "__weakref__",
        "acc",
        "armed",
        "chunks",
        "done",
        "first",
        "on_end",
        "record",
        "t0",
    )  # fmt: skip

    def __init__(self, record: dict[str, Any], acc: Accumulator | None,
                 on_end: Callable[[bool], None] | None) -> None:  # fmt: skip
        self.record = record
        self.acc = acc
        self.on_end = on_end
        self.t0 = _now()
        self.first: float | None = None
        self.chunks = 0
        self.done = False
        self.armed = False  # a request was made: dropping this Call finalises it

    def chunk(self, item: Any) -> bool:
        """Account one stream chunk; True means hide it from the user."""
        _guard.fault("stream.chunk")
        if self.first is None:
            self.first = _now()
        acc = self.acc
        if acc is not None and acc.add(item):
            return True
        self.chunks += 1
        return False

    def finish(self, status: str | None, exc: BaseException | None = None,
               result: Any = None, fill: Callable[[Any, dict[str, Any]], None] | None = None
               ) -> None:  # fmt: skip
        """Complete and submit the record once; later calls do nothing.

        Args:
            status: the stream status, or None for a non-stream call.
            exc: the exception the SDK raised, if any.
            result: a non-stream result, read by ``fill``.
            fill: writes a non-stream result's fields into the record.
        """
        if self.done:
            return
        self.done = True
        end = _now()
        rec = self.record
        with _guard.guard("capture.finish"):
            _guard.fault("capture.finish")
            rec["latency_ms"] = (end - self.t0) * 1000.0
            if status is not None:
                rec["stream"] = {"status": status, "chunks": self.chunks}
                if self.first is not None:
                    rec["ttft_ms"] = (self.first - self.t0) * 1000.0
                if self.acc is not None:
                    self.acc.fill(rec)
            elif fill is not None and result is not None:
                fill(result, rec)
            if exc is not None and not rec.get("fallback"):
                rec["error"] = _records.error_info(exc)
        if self.on_end is not None:
            with _guard.guard("router.record"):
                self.on_end(exc is None and status != "error")
        with _guard.guard("capture.submit"):
            _guard.fault("capture.submit")
            _records.submit(rec)

    def __del__(self) -> None:
        if self.armed and not self.done:
            try:
                self.finish("partial")
            except Exception as exc:  # noqa: BLE001 - a finaliser must not raise
                try:
                    _guard.swallow("stream.gc", exc)
                except Exception:  # noqa: BLE001 - not even under the test suite
                    pass


def tag(obj: Any, call_id: str) -> None:
    """Give an SDK response object a ``logos_shift_id`` without touching its fields.

    pydantic models with ``extra="allow"`` would put a ``setattr`` into
    ``model_dump()``; ``object.__setattr__`` keeps it out of the dump.
    """
    try:
        object.__setattr__(obj, "logos_shift_id", call_id)
    except (AttributeError, TypeError):
        pass  # __slots__ objects, builtins: no attribute, still last_call_id
    _context.set_last_call_id(call_id)


def _sync_gen(inner: Iterator[Any], call: Call) -> Generator[Any, None, None]:
    status = "partial"
    err: BaseException | None = None
    try:
        for item in inner:
            hide = False
            with _guard.guard("stream.chunk"):
                hide = call.chunk(item)
            if not hide:
                yield item
        status = "completed"
    except Exception as exc:
        status, err = "error", exc
        raise
    finally:
        call.finish(status, err)


async def _async_gen(inner: AsyncIterator[Any], call: Call) -> AsyncGenerator[Any, None]:
    status = "partial"
    err: BaseException | None = None
    try:
        async for item in inner:
            hide = False
            with _guard.guard("stream.chunk"):
                hide = call.chunk(item)
            if not hide:
                yield item
        status = "completed"
    except Exception as exc:
        status, err = "error", exc
        raise
    finally:
        call.finish(status, err)


def wrap_stream(stream: Any, call: Call, is_async: bool) -> None:
    """Make an SDK stream object (in place) report to ``call`` exactly once.

    The HTTP response's ``close`` / ``aclose`` is hooked rather than the
    stream's: the SDK helpers (``.stream()`` managers) close the response
    directly.  The SDK's own generator also closes it when it ends, while our
    generator is running; that case is left to the generator's ``finally``.
    """
    _guard.fault("stream.wrap")
    inner = stream._iterator  # anthropic 2.x builds it lazily; this is the same object
    response = stream.response
    call.armed = True
    if is_async:
        agen: Any = _async_gen(inner, call)
        stream._iterator = agen
        orig_aclose = response.aclose

        async def aclose_hook() -> None:
            if not agen.ag_running:
                with _guard.guard("stream.close"):
                    call.finish("partial")
            await orig_aclose()

        response.aclose = aclose_hook
    else:
        gen: Any = _sync_gen(inner, call)
        stream._iterator = gen
        orig_close = response.close

        def close_hook() -> None:
            if not gen.gi_running:
                with _guard.guard("stream.close"):
                    call.finish("partial")
            orig_close()

        response.close = close_hook
