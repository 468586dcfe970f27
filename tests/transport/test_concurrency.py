"""32 threads and 1,000 asyncio tasks capturing at once: exact accounting, no exception."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import logos_shift
from tests.transport.collector import Collector, assert_accounted

THREADS = 32
PER_THREAD = 60
TASKS = 1000
PER_TASK = 2


@pytest.fixture
def collector() -> Iterator[Collector]:
    """A running fake ingest server, every socket closed afterwards."""
    with Collector() as c:
        yield c


def _client(collector: Collector, tmp_path: Path, **kw: Any) -> logos_shift.LogosShift:
    settings: dict[str, Any] = {
        "flush_interval": 0.05, "max_backoff": 0.2, "http_timeout": 2.0, "batch_size": 200, **kw,
    }  # fmt: skip
    return logos_shift.LogosShift(
        server_url=collector.url, api_key="k", spool_dir=str(tmp_path / "spool"), **settings
    )


class _Burst:
    """Runs 32 capturing threads and 1,000 capturing tasks at the same time."""

    def __init__(self, ls: logos_shift.LogosShift) -> None:
        self.ls = ls
        self.ids: list[str] = []
        self.errors: list[BaseException] = []
        self.samples: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()

        @ls(dataset="threads")
        def sync_call(i: int) -> dict[str, int]:
            return {"i": i}

        @ls(dataset="tasks")
        async def async_call(i: int) -> dict[str, int]:
            await asyncio.sleep(0)
            return {"i": i}

        self.sync_call = sync_call
        self.async_call = async_call

    def _thread(self, barrier: threading.Barrier) -> None:
        try:
            barrier.wait(10)
            got = [str(self.sync_call(i)["logos_shift_id"]) for i in range(PER_THREAD)]
            fb = self.ls.provide_feedback(got[0], "success", score=1.0)
            assert fb is not None
            got.append(fb)
        except BaseException as exc:
            with self._lock:
                self.errors.append(exc)
            return
        with self._lock:
            self.ids += got

    async def _task(self, start: asyncio.Event) -> list[str]:
        await start.wait()
        return [str((await self.async_call(i))["logos_shift_id"]) for i in range(PER_TASK)]

    async def _tasks(self, barrier: threading.Barrier) -> None:
        start = asyncio.Event()
        tasks = [asyncio.create_task(self._task(start)) for _ in range(TASKS)]
        await asyncio.to_thread(barrier.wait, 10)
        start.set()
        for result in await asyncio.gather(*tasks, return_exceptions=True):
            if isinstance(result, BaseException):
                self.errors.append(result)
            else:
                self.ids += result

    def _monitor(self) -> None:
        # The accounting identity must hold at every instant, not just at the end.
        while not self._stop.is_set():
            self.samples.append(self.ls.stats())
            self._stop.wait(0.005)

    def run(self) -> None:
        barrier = threading.Barrier(THREADS + 1)
        threads = [threading.Thread(target=self._thread, args=(barrier,)) for _ in range(THREADS)]
        monitor = threading.Thread(target=self._monitor)
        monitor.start()
        for t in threads:
            t.start()
        asyncio.run(self._tasks(barrier))
        for t in threads:
            t.join(60)
        self._stop.set()
        monitor.join(10)


EXPECTED = THREADS * (PER_THREAD + 1) + TASKS * PER_TASK


def test_threads_and_tasks_exact_accounting(collector: Collector, tmp_path: Path) -> None:
    """Every record captured by 32 threads and 1,000 tasks at once arrives exactly once.

    On a loaded machine the burst can pass the queue's high-water mark: those batches
    go to the spool and this process replays them, so each record still arrives once.
    """
    ls = _client(collector, tmp_path)
    burst = _Burst(ls)
    burst.run()
    assert burst.errors == []
    assert len(burst.ids) == len(set(burst.ids)) == EXPECTED
    assert ls.flush(10)
    stats = ls.stats()
    assert stats["captured"] == stats["sent"] + stats["spooled"] == EXPECTED
    assert stats["dropped"] == 0
    assert_accounted(stats)
    assert burst.samples
    for sample in burst.samples:
        assert_accounted(sample, pending=None)
    assert collector.wait_for(set(burst.ids))
    assert ls.shutdown(2)
    assert sorted(collector.ids()) == sorted(burst.ids)


def test_burst_into_a_flapping_server_is_accounted(collector: Collector, tmp_path: Path) -> None:
    """With the server failing part of the time, every record is sent or spooled, then delivered."""
    collector.fail(503, times=6)
    ls = _client(collector, tmp_path)
    burst = _Burst(ls)
    burst.run()
    assert burst.errors == []
    assert ls.flush(10)
    stats = ls.stats()
    assert stats["captured"] == EXPECTED
    assert stats["dropped"] == 0
    assert_accounted(stats)
    assert burst.samples
    for sample in burst.samples:
        assert_accounted(sample, pending=None)
    assert collector.wait_for(set(burst.ids))
    assert ls.shutdown(2)
    assert set(collector.ids()) == set(burst.ids)


def test_burst_over_the_memory_bound_drops_and_counts(collector: Collector, tmp_path: Path) -> None:
    """With the spool unusable too, records past the queue bound are dropped as queue_full."""
    collector.slow(0.2)
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the spool directory should be")
    ls = logos_shift.LogosShift(
        server_url=collector.url, api_key="k", spool_dir=str(blocker / "spool"),
        flush_interval=0.05, max_backoff=0.2, http_timeout=2.0, max_queue_items=300,
        batch_size=100,
    )  # fmt: skip
    burst = _Burst(ls)
    burst.run()
    assert burst.errors == []
    assert len(burst.ids) == EXPECTED  # every call still returned its result
    assert ls.flush(10)
    assert ls.shutdown(2)
    stats = ls.stats()
    assert stats["captured"] == EXPECTED
    assert stats["dropped_by_reason"]["queue_full"] > 0
    assert set(stats["dropped_by_reason"]) <= {"queue_full", "spool_unavailable"}
    assert stats["spooled"] == 0
    assert_accounted(stats)
    assert burst.samples
    for sample in burst.samples:
        assert_accounted(sample, pending=None)
    assert len(collector.ids()) == stats["sent"]
