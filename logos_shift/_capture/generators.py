"""Generator and async-generator capture for the ``@ls`` decorator.

The wrapped generator is driven step by step so each step runs under the
call's scope (SDK calls made inside it inherit its dataset and metadata), and
the record is finished exactly once: exhausted, closed early, thrown into, or
failed.  Up to ``MAX_STREAM_ITEMS`` items are kept as the output; all are counted.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Callable, Generator
from typing import Any

from .scope import SCOPE

#: Items kept as a generator's recorded output (all are counted).
MAX_STREAM_ITEMS = 1000

Finish = Callable[..., None]


class _Collector:
    __slots__ = ("first", "items", "n")

    def __init__(self) -> None:
        self.items: list[Any] = []
        self.n = 0
        self.first: float | None = None

    def add(self, item: Any) -> None:
        if self.first is None:
            self.first = time.perf_counter()
        self.n += 1
        if len(self.items) < MAX_STREAM_ITEMS:
            self.items.append(item)

    def stream(self, status: str) -> dict[str, Any]:
        return {"status": status, "chunks": self.n}


def wrap_gen(gen: Generator[Any, Any, Any], call: Any, finish: Finish) -> Generator[Any, Any, Any]:
    """Re-yield ``gen``'s items under ``call``'s scope; ``finish`` the record once, on any exit.

    Args:
        gen: the generator the decorated function returned.
        call: the capture (``None`` = not captured: plain pass-through).
        finish: ``finish(call, output=, error=, stream=, ttft=)``.

    Yields:
        The generator's items, with ``send``/``throw``/``close`` passed through.
    """
    if call is None:
        return (yield from gen)
    col = _Collector()
    scope_var = SCOPE
    value: Any = None
    exc: BaseException | None = None
    status = "partial"
    error: BaseException | None = None
    try:
        while True:
            token = scope_var.set(call.scope)
            try:
                if exc is not None:
                    e, exc = exc, None
                    item = gen.throw(e)
                else:
                    item = gen.send(value)
            except StopIteration as stop:
                status = "completed"
                return stop.value
            except BaseException as err:
                status, error = "error", err
                raise
            finally:
                scope_var.reset(token)
            col.add(item)
            try:
                value = yield item
            except GeneratorExit:
                gen.close()
                raise
            except BaseException as err:  # noqa: BLE001 - thrown into the wrapped generator
                exc, value = err, None
    finally:
        finish(call, output=col.items, error=error, stream=col.stream(status), ttft=col.first)


async def wrap_agen(
    agen: AsyncGenerator[Any, Any], call: Any, finish: Finish
) -> AsyncGenerator[Any, Any]:
    """The async twin of :func:`wrap_gen`.

    Args:
        agen: the async generator the decorated function returned.
        call: the capture (``None`` = not captured: plain pass-through).
        finish: ``finish(call, output=, error=, stream=, ttft=)``.

    Yields:
        The async generator's items, with ``asend``/``athrow``/``aclose`` passed through.
    """
    if call is None:
        async for item in agen:
            yield item
        return
    col = _Collector()
    scope_var = SCOPE
    value: Any = None
    exc: BaseException | None = None
    status = "partial"
    error: BaseException | None = None
    try:
        while True:
            token = scope_var.set(call.scope)
            try:
                if exc is not None:
                    e, exc = exc, None
                    item = await agen.athrow(e)
                else:
                    item = await agen.asend(value)
            except StopAsyncIteration:
                status = "completed"
                return
            except BaseException as err:
                status, error = "error", err
                raise
            finally:
                scope_var.reset(token)
            col.add(item)
            try:
                value = yield item
            except GeneratorExit:
                await agen.aclose()
                raise
            except BaseException as err:  # noqa: BLE001 - thrown into the wrapped generator
                exc, value = err, None
    finally:
        finish(call, output=col.items, error=error, stream=col.stream(status), ttft=col.first)
