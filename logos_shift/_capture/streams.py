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
from typing import Any, Protocol

from logos_shift import _guard

from . import record as _records
from .frames import hidden_from_warnings

_perf = time.perf_counter


class Accumulator(Protocol):
    """Folds a stream's chunks into the record as they pass, on the caller's thread.

    Each chunk is read once, when the user receives it, and not kept: a
    stream's chunks are freed as promptly as without instrumentation (keeping
    them costs far more than reading them, in allocator and cache traffic and
    garbage-collector work).  Only strings and the few objects the record
    needs are kept.
    """

    def add(self, chunk: Any) -> None:
        """Take the next chunk, in stream order."""

    def fill(self, record: dict[str, Any]) -> None:
        """Set output/usage/served_model/response_id from everything added (maybe partial)."""


#: Makes a fresh :class:`Accumulator` for one stream.
Assembler = Callable[[], Accumulator]


class StreamCapture:
    """The record of one streamed call while it is being consumed.

    Holds no reference to the stream itself, so a ``weakref.finalize`` on the
    stream can finish it after the user drops the stream.  Nor does it keep
    the chunks: each one is folded into the provider's accumulator as it
    passes and then belongs to the user alone.
    """

    __slots__ = ("acc", "active", "count", "done", "hide", "inst", "record", "size", "t0", "ttft")

    def __init__(
        self,
        record: dict[str, Any],
        size: int,
        t0: float,
        assemble: Assembler,
        hide: Callable[[Any], bool] | None,
        inst: Any = None,
    ) -> None:
        #: The instance that started the call (the record goes there, whenever it ends).
        self.inst = inst
        self.record = record
        self.size = size
        self.t0 = t0
        self.acc: Accumulator | None = assemble()
        self.hide = hide
        self.count = 0
        self.ttft: float | None = None
        self.done = False
        #: True while the SDK's own iterator runs (it closes the response itself
        #: on exhaustion or error; that close must not count as "partial").
        self.active = False

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
            now = _perf()
            rec = self.record
            rec["latency_ms"] = (now - self.t0) * 1000.0
            if self.ttft is not None:
                rec["ttft_ms"] = (self.ttft - self.t0) * 1000.0
            rec["stream"] = {"status": status, "chunks": self.count}
            if exc is not None:
                rec["error"] = _records.error_info(exc)
            acc, self.acc = self.acc, None
            if acc is not None:
                acc.fill(rec)
            _records.submit(rec, self.size + 200 * self.count, self.inst)


def _sync_gen(inner: Any, cap: StreamCapture) -> Iterator[Any]:
    # The per-chunk path is kept to a few bytecodes (it runs once per chunk, in
    # between the SDK's own much larger per-chunk work, where every extra
    # instruction runs cache-cold): the accumulator reads the chunk once and it
    # is not kept.  ``cap.active`` is True exactly while the SDK's own iterator
    # runs (see StreamCapture).
    hide = cap.hide
    acc = cap.acc
    add = None if acc is None else acc.add
    faults = _guard.FAULTS
    try:
        cap.active = True
        for chunk in inner:
            cap.active = False
            if cap.count == 0:
                cap.ttft = _perf()
            cap.count += 1
            if add is not None:
                try:
                    if faults:
                        _guard.fault("stream_chunk")
                    add(chunk)
                except Exception as exc:  # noqa: BLE001 - never into the user's loop
                    _guard.swallow("stream_chunk", exc)
            if hide is None or not _hidden(hide, chunk):
                yield chunk
            cap.active = True
        cap.active = False
    except GeneratorExit:
        cap.active = False
        cap.finish("partial")
        raise
    except BaseException as exc:
        cap.active = False
        cap.finish("error", exc)
        raise
    cap.finish("completed")


def _hidden(hide: Callable[[Any], bool], chunk: Any) -> bool:
    try:
        return hide(chunk)
    except Exception as exc:  # noqa: BLE001 - never drop a chunk the user should see
        _guard.swallow("stream_chunk", exc)
        return False


async def _async_gen(inner: Any, cap: StreamCapture) -> AsyncIterator[Any]:
    hide = cap.hide
    acc = cap.acc
    add = None if acc is None else acc.add
    faults = _guard.FAULTS
    try:
        cap.active = True
        async for chunk in inner:
            cap.active = False
            if cap.count == 0:
                cap.ttft = _perf()
            cap.count += 1
            if add is not None:
                try:
                    if faults:
                        _guard.fault("stream_chunk")
                    add(chunk)
                except Exception as exc:  # noqa: BLE001 - never into the user's loop
                    _guard.swallow("stream_chunk", exc)
            if hide is None or not _hidden(hide, chunk):
                yield chunk
            cap.active = True
        cap.active = False
    except GeneratorExit:
        cap.active = False
        cap.finish("partial")
        raise
    except BaseException as exc:
        cap.active = False
        cap.finish("error", exc)
        raise
    cap.finish("completed")


# A warning the SDK gives while a chunk is read names the caller's loop, not these frames.
_sync_gen = hidden_from_warnings(_sync_gen)
_async_gen = hidden_from_warnings(_async_gen)


def _on_gc(cap: StreamCapture) -> None:
    cap.finish("partial")


def caller(obj: Any, name: str) -> Callable[..., Any] | None:
    """A callable for ``obj.<name>(...)`` that holds ``obj`` only weakly.

    A closure over the bound method would make ``obj`` (the stream, its HTTP
    response) part of a reference cycle through its own instance attribute,
    so it would outlive the call until a garbage collection instead of being
    freed at once, as the bare SDK's objects are.
    """
    own = vars(obj).get(name) if hasattr(obj, "__dict__") else None
    if own is not None:  # another library's instance-level hook: keep calling it
        return own  # type: ignore[no-any-return]
    fn = getattr(type(obj), name, None)
    try:
        if fn is None:  # e.g. a proxy that forwards attributes (another library's wrapper)
            raise TypeError(name)
        ref = weakref.ref(obj)
    except TypeError:
        bound: Callable[[], Any] | None = getattr(obj, name, None)
        return bound

    def call(*args: Any, **kwargs: Any) -> Any:
        target = ref()
        return None if target is None else fn(target, *args, **kwargs)

    return call


def instrument(stream: Any, cap: StreamCapture, is_async: bool) -> None:
    """Make an SDK ``Stream`` / ``AsyncStream`` report into ``cap``.

    Everything is built first and attached last, so a failure part-way leaves
    the stream untouched.  No reference cycle is created: the hooks reach the
    stream and its response through weak references.

    Args:
        stream: the SDK stream object (has ``_iterator`` and ``close``).
        cap: the capture to finish.
        is_async: whether it is an ``AsyncStream``.
    """
    _guard.fault("stream_wrap")
    inner = stream._iterator
    original_close = caller(stream, "close")
    if original_close is None:
        raise TypeError(f"{type(stream).__name__} has no close()")  # left untouched
    wrapped_iter = _async_gen(inner, cap) if is_async else _sync_gen(inner, cap)
    close = close_then(original_close, lambda: cap.finish("partial"), is_async)
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
    if response is None or not hasattr(response, "__dict__"):
        return None
    original = caller(response, name)
    if original is None:
        return None

    def after() -> None:
        if not cap.active:
            cap.finish("partial")

    return close_then(original, after, is_async)


def close_then(
    original: Callable[[], Any], after: Callable[[], None], is_async: bool
) -> Callable[[], Any]:
    """A replacement ``close()`` / ``aclose()``: ``original`` first, then ``after``.

    ``after`` runs even when ``original`` raises; the exception still reaches
    the caller.  Neither closure refers to the object being closed (use
    :func:`caller` for ``original``), so no reference cycle is made.

    Args:
        original: the object's own close (an awaitable-returning one when ``is_async``).
        after: what to do once it has run (finish the record).
        is_async: build an ``async def aclose()``.

    Returns:
        The function to install in place of the object's close.
    """
    if is_async:

        async def aclose() -> None:
            try:
                pending = original()
                if pending is not None:
                    await pending
            finally:
                after()

        return aclose

    def close() -> None:
        try:
            original()
        finally:
            after()

    return close
