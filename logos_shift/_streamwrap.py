"""Shared stream capture: keep the SDK's stream object, finalise exactly once.

The user keeps the very object the SDK returned (``isinstance(s,
openai.Stream)`` holds, ``with s as x`` gives ``s``).  Only its ``_iterator``
is replaced by a generator that records each chunk, and its ``close`` by one
that also finalises.  Every exit path ends in :meth:`StreamCapture.finish`,
which runs once: exhaustion, ``break`` + ``close()``, ``with``-exit, an
exception mid-stream, the generator being closed, or the stream being
garbage-collected (``weakref.finalize``).
"""

from __future__ import annotations

import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from . import _guard, _records
from .providers._contract import Assembler


class StreamCapture:
    """The record of one streamed call while it is being consumed.

    Holds no reference to the stream itself, so a ``weakref.finalize`` on the
    stream can finish it after the user drops the stream.
    """

    __slots__ = ("active", "assemble", "chunks", "done", "hide", "record", "size", "t0", "ttft")

    def __init__(
        self,
        record: dict[str, Any],
        size: int,
        t0: float,
        assemble: Assembler,
        hide: Callable[[Any], bool] | None,
    ) -> None:
        self.record = record
        self.size = size
        self.t0 = t0
        self.assemble = assemble
        self.hide = hide
        self.chunks: list[Any] = []
        self.ttft: float | None = None
        self.done = False
        #: True while the SDK's own iterator runs (it closes the response itself
        #: on exhaustion or error; that close must not count as "partial").
        self.active = False

    def on_chunk(self, chunk: Any) -> None:
        """Remember one chunk (by reference; assembly happens at the end)."""
        with _guard.guard("stream_chunk"):
            _guard.fault("stream_chunk")
            if self.ttft is None:
                self.ttft = time.perf_counter()
            self.chunks.append(chunk)

    def finish(self, status: str, exc: BaseException | None = None) -> None:
        """Complete and submit the record; later calls do nothing.

        Args:
            status: ``"completed"``, ``"partial"`` or ``"error"``.
            exc: the exception that ended the stream, if any.
        """
        if self.done:
            return
        self.done = True
        with _guard.guard("stream_finish"):
            _guard.fault("stream_finish")
            now = time.perf_counter()
            rec = self.record
            rec["latency_ms"] = (now - self.t0) * 1000.0
            if self.ttft is not None:
                rec["ttft_ms"] = (self.ttft - self.t0) * 1000.0
            rec["stream"] = {"status": status, "chunks": len(self.chunks)}
            if exc is not None:
                rec["error"] = _records.error_info(exc)
            self.assemble(self.chunks, rec)
            _records.submit(rec, self.size + 200 * len(self.chunks))


def _sync_gen(inner: Any, cap: StreamCapture) -> Iterator[Any]:
    hide = cap.hide
    try:
        while True:
            cap.active = True
            try:
                chunk = next(inner)
            except StopIteration:
                break
            finally:
                cap.active = False
            cap.on_chunk(chunk)
            if hide is not None and hide(chunk):
                continue
            yield chunk
    except GeneratorExit:
        cap.finish("partial")
        raise
    except BaseException as exc:
        cap.finish("error", exc)
        raise
    cap.finish("completed")


async def _async_gen(inner: Any, cap: StreamCapture) -> AsyncIterator[Any]:
    hide = cap.hide
    try:
        while True:
            cap.active = True
            try:
                chunk = await inner.__anext__()
            except StopAsyncIteration:
                break
            finally:
                cap.active = False
            cap.on_chunk(chunk)
            if hide is not None and hide(chunk):
                continue
            yield chunk
    except GeneratorExit:
        cap.finish("partial")
        raise
    except BaseException as exc:
        cap.finish("error", exc)
        raise
    cap.finish("completed")


def _on_gc(cap: StreamCapture) -> None:
    cap.finish("partial")


def instrument(stream: Any, cap: StreamCapture, is_async: bool) -> None:
    """Make an SDK ``Stream`` / ``AsyncStream`` report into ``cap``.

    Everything is built first and attached last, so a failure part-way leaves
    the stream untouched.

    Args:
        stream: the SDK stream object (has ``_iterator`` and ``close``).
        cap: the capture to finish.
        is_async: whether it is an ``AsyncStream``.
    """
    _guard.fault("stream_wrap")
    inner = stream._iterator
    original_close = stream.close
    wrapped_iter: Any
    close: Callable[[], Any]
    if is_async:
        wrapped_iter = _async_gen(inner, cap)

        async def aclose() -> None:
            try:
                await original_close()
            finally:
                cap.finish("partial")

        close = aclose
    else:
        wrapped_iter = _sync_gen(inner, cap)

        def sclose() -> None:
            try:
                original_close()
            finally:
                cap.finish("partial")

        close = sclose
    response = getattr(stream, "response", None)
    response_close = _response_hook(response, cap, is_async)
    weakref.finalize(stream, _on_gc, cap)
    if response_close is not None:
        # openai's ChatCompletionStream.close() closes the HTTP response directly.
        setattr(response, "aclose" if is_async else "close", response_close)
    stream.close = close
    stream._iterator = wrapped_iter


def _response_hook(response: Any, cap: StreamCapture, is_async: bool) -> Any:
    name = "aclose" if is_async else "close"
    original = getattr(response, name, None)
    if original is None or not hasattr(response, "__dict__"):
        return None
    if is_async:

        async def aclose() -> None:
            try:
                await original()
            finally:
                if not cap.active:
                    cap.finish("partial")

        return aclose

    def close() -> None:
        try:
            original()
        finally:
            if not cap.active:
                cap.finish("partial")

    return close
