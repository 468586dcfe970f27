"""The generic decorator: what it records and what it never changes."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

import logos_shift
from logos_shift.testing import capture_records


def test_sync_function_record() -> None:
    """A sync call records args by name, output, latency, dataset and function."""
    with capture_records() as cap:

        @cap.client(dataset="sales")
        def add_sales(x: int, y: int = 0) -> dict[str, int]:
            return {"sum": x + y}

        r = add_sales(1, y=2, logos_shift_metadata={"user_id": "12345"})
        [rec] = cap.calls
    assert r == {"sum": 3, "logos_shift_id": rec["id"]}
    assert rec["input"] == {"x": 1, "y": 2}
    assert rec["output"] == {"sum": 3}
    assert rec["dataset"] == "sales"
    assert rec["function"] == f"{__name__}:test_sync_function_record.<locals>.add_sales"
    assert rec["metadata"] == {"user_id": "12345"}
    assert rec["source"] == "function"
    assert rec["error"] is None
    assert rec["latency_ms"] >= 0
    assert rec["schema"] == 1
    assert rec["ts"].endswith("Z")
    assert rec["id"][14] == "7"  # UUIDv7


def test_metadata_kwarg_never_reaches_function() -> None:
    """logos_shift_metadata is popped before the call."""
    seen: dict[str, Any] = {}
    with capture_records() as cap:

        @cap.client()
        def f(**kwargs: Any) -> None:
            seen.update(kwargs)

        f(a=1, logos_shift_metadata={"k": "v"})
        [rec] = cap.calls
    assert seen == {"a": 1}
    assert rec["metadata"] == {"k": "v"}
    assert rec["input"] == {"a": 1}


def test_id_key_option_off() -> None:
    """add_id_to_result=False leaves dict results untouched."""
    with capture_records(add_id_to_result=False) as cap:

        @cap.client()
        def f() -> dict[str, int]:
            return {"a": 1}

        assert f() == {"a": 1}
        assert logos_shift.last_call_id() == cap.calls[0]["id"]


def test_non_dict_result_uses_last_call_id() -> None:
    """Results that cannot carry an id are reachable via last_call_id()."""
    with capture_records() as cap:

        @cap.client
        def f() -> int:
            return 5

        assert f() == 5
        assert logos_shift.last_call_id() == cap.calls[0]["id"]
        assert cap.calls[0]["output"] == 5


def test_exception_is_same_object_with_traceback() -> None:
    """The caller gets the very exception object, traceback intact."""
    boom = ValueError("boom")
    with capture_records() as cap:

        @cap.client()
        def f() -> None:
            raise boom

        with pytest.raises(ValueError) as info:
            f()
        [rec] = cap.calls
    assert info.value is boom
    frames = [tb.tb_frame.f_code.co_name for tb in _walk(info.value.__traceback__)]
    assert "f" in frames
    assert rec["error"] == {"type": "ValueError", "message": "boom", "status": None}
    assert rec["output"] is None


def _walk(tb: Any) -> Iterator[Any]:
    while tb is not None:
        yield tb
        tb = tb.tb_next


def test_async_function() -> None:
    """Async functions are captured and stay coroutine functions."""
    with capture_records() as cap:

        @cap.client(dataset="a")
        async def f(x: int) -> dict[str, int]:
            await asyncio.sleep(0)
            return {"x": x}

        assert inspect.iscoroutinefunction(f)
        r = asyncio.run(f(3))
        [rec] = cap.calls
    assert r["logos_shift_id"] == rec["id"]
    assert rec["input"] == {"x": 3}
    assert rec["output"] == {"x": 3}


def test_async_exception_propagates() -> None:
    """An async function's exception reaches the caller unchanged."""
    err = KeyError("k")
    with capture_records() as cap:

        @cap.client()
        async def f() -> None:
            raise err

        with pytest.raises(KeyError) as info:
            asyncio.run(f())
        assert info.value is err
        assert cap.calls[0]["error"]["type"] == "KeyError"


def test_generator_completed_and_partial() -> None:
    """A generator records its items and whether it was exhausted."""
    with capture_records() as cap:

        @cap.client()
        def gen(n: int) -> Iterator[int]:
            yield from range(n)

        assert list(gen(3)) == [0, 1, 2]
        g = gen(10)
        assert next(g) == 0
        g.close()
        full, partial = cap.calls
    assert full["output"] == [0, 1, 2]
    assert full["stream"] == {"status": "completed", "chunks": 3}
    assert partial["stream"] == {"status": "partial", "chunks": 1}


def test_generator_send_and_throw() -> None:
    """send() and throw() reach the wrapped generator."""
    with capture_records() as cap:

        @cap.client()
        def echo() -> Iterator[Any]:
            got = None
            while True:
                try:
                    got = yield got
                except KeyError:
                    got = "caught"

        g = echo()
        assert next(g) is None
        assert g.send(5) == 5
        assert g.throw(KeyError("x")) == "caught"
        g.close()
        [rec] = cap.calls
    assert rec["output"] == [None, 5, "caught"]


def test_generator_error_mid_stream() -> None:
    """An exception inside a generator is recorded with status error."""
    with capture_records() as cap:

        @cap.client()
        def gen() -> Iterator[int]:
            yield 1
            raise RuntimeError("mid")

        g = gen()
        assert next(g) == 1
        with pytest.raises(RuntimeError, match="mid"):
            next(g)
        [rec] = cap.calls
    assert rec["stream"] == {"status": "error", "chunks": 1}
    assert rec["error"]["message"] == "mid"


def test_async_generator() -> None:
    """Async generators are captured, exhausted or closed early."""
    with capture_records() as cap:

        @cap.client()
        async def agen(n: int) -> AsyncIterator[int]:
            for i in range(n):
                yield i

        async def main() -> list[int]:
            out = [x async for x in agen(3)]
            g = agen(5)
            await g.__anext__()
            await g.aclose()
            return out

        assert asyncio.run(main()) == [0, 1, 2]
        full, partial = cap.calls
    assert full["stream"] == {"status": "completed", "chunks": 3}
    assert partial["stream"]["status"] == "partial"


def test_methods_classmethods_staticmethods() -> None:
    """Methods bind normally and self/cls are never recorded."""
    with capture_records() as cap:
        ls = cap.client

        class Shop:
            rate = 2

            @ls()
            def price(self, n: int) -> int:
                return n * self.rate

            @classmethod
            @ls()
            def make(cls, n: int) -> int:
                return n * cls.rate

            @ls()
            @classmethod
            def make2(cls, n: int) -> int:
                return n + cls.rate

            @staticmethod
            @ls()
            def plain(n: int) -> int:
                return n

        s = Shop()
        assert s.price(3) == 6
        assert Shop.price(s, 4) == 8
        assert Shop.make(5) == 10
        assert Shop.make2(1) == 3
        assert Shop.plain(7) == 7
        inputs = [c["input"] for c in cap.calls]
    assert inputs == [{"n": 3}, {"n": 4}, {"n": 5}, {"n": 1}, {"n": 7}]


def test_varargs_recorded() -> None:
    """Extra positional arguments are recorded under the *args name."""
    with capture_records() as cap:

        @cap.client()
        def f(a: int, *rest: int, **kw: int) -> int:
            return a + sum(rest) + sum(kw.values())

        assert f(1, 2, 3, z=4) == 10
        assert cap.calls[0]["input"] == {"a": 1, "rest": [2, 3], "z": 4}


def test_call_time_snapshot_of_inputs() -> None:
    """Mutating a list after the call does not change what was captured."""
    with capture_records() as cap:

        @cap.client()
        def f(messages: list[dict[str, str]]) -> int:
            return len(messages)

        msgs = [{"role": "user", "content": "hi"}]
        f(msgs)
        msgs.append({"role": "assistant", "content": "later"})
        msgs[0]["content"] = "changed"
        assert cap.calls[0]["input"] == {"messages": [{"role": "user", "content": "hi"}]}


def test_context_nests_and_applies() -> None:
    """context() sets dataset and metadata for captures inside it, nested."""
    with capture_records() as cap:

        @cap.client()
        def f() -> None:
            return None

        with logos_shift.context(dataset="outer", user_id="u1", plan="pro"):
            f()
            with logos_shift.context(dataset="inner", team="x"):
                f()
            f()
        f()
        recs = cap.calls
    assert [r["dataset"] for r in recs] == ["outer", "inner", "outer", "default"]
    assert recs[1]["metadata"] == {"user_id": "u1", "plan": "pro", "team": "x"}
    assert recs[3]["metadata"] == {}


def test_decorator_dataset_beats_context() -> None:
    """A dataset named on the decorator wins over the context's."""
    with capture_records() as cap:

        @cap.client(dataset="fixed")
        def f() -> None:
            return None

        with logos_shift.context(dataset="ctx"):
            f()
        assert cap.calls[0]["dataset"] == "fixed"


def test_last_call_id_per_thread_and_task() -> None:
    """last_call_id() is per thread and per asyncio task."""
    with capture_records() as cap:

        @cap.client()
        def f(i: int) -> int:
            return i

        @cap.client()
        async def g(i: int) -> tuple[int, str | None]:
            await asyncio.sleep(0.001 * (5 - i))
            return i, logos_shift.last_call_id()

        results: dict[int, str | None] = {}

        def worker(i: int) -> None:
            f(i)
            results[i] = logos_shift.last_call_id()

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

        async def main() -> list[tuple[int, str | None]]:
            async def one(i: int) -> tuple[int, str | None]:
                await g(i)
                return i, logos_shift.last_call_id()

            return await asyncio.gather(*(one(i) for i in range(5)))

        task_results = asyncio.run(main())
        calls = cap.calls
    by_input = {(c["function"].endswith("f"), c["input"]["i"]): c["id"] for c in calls}
    for i, cid in results.items():
        assert cid == by_input[(True, i)]
    for i, cid in task_results:
        assert cid == by_input[(False, i)]


def test_context_follows_copied_context_into_threads() -> None:
    """A thread run in a copied context sees the caller's context()."""
    with capture_records() as cap:

        @cap.client()
        def f() -> None:
            return None

        with logos_shift.context(dataset="copied", user_id="u9"):
            ctx = contextvars.copy_context()
        t = threading.Thread(target=ctx.run, args=(f,))
        t.start()
        t.join()
        [rec] = cap.calls
    assert rec["dataset"] == "copied"
    assert rec["metadata"] == {"user_id": "u9"}


def test_disabled_instance_passes_through() -> None:
    """enabled=False captures nothing and changes nothing."""
    with capture_records(enabled=False) as cap:

        @cap.client()
        def f() -> dict[str, int]:
            return {"a": 1}

        assert f() == {"a": 1}
        assert cap.calls == []


def test_keyboard_interrupt_propagates() -> None:
    """BaseExceptions such as KeyboardInterrupt pass through and are recorded."""
    with capture_records() as cap:

        @cap.client()
        def f() -> None:
            raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            f()
        assert cap.calls[0]["error"]["type"] == "KeyboardInterrupt"
    assert sys.exc_info()[0] is None
