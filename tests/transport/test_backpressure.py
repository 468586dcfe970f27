"""Backpressure over real sockets: a slow or hung server spills to the spool, never drops."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import logos_shift
from tests.transport.collector import Collector, assert_accounted, capture


@pytest.fixture
def collector() -> Iterator[Collector]:
    """A running fake ingest server, every socket closed afterwards."""
    with Collector() as c:
        yield c


def _client(collector: Collector, tmp_path: Path, **kw: Any) -> logos_shift.LogosShift:
    settings: dict[str, Any] = {
        "flush_interval": 0.05, "max_backoff": 0.2, "http_timeout": 10.0, "batch_size": 50, **kw,
    }  # fmt: skip
    return logos_shift.LogosShift(
        server_url=collector.url, api_key="k", spool_dir=str(tmp_path / "spool"),
        wait_for_config=0, **settings,
    )  # fmt: skip


def _produce(ls: logos_shift.LogosShift, seconds: float, per_second: int) -> list[str]:
    """Capture at a steady modest rate from 4 threads, like an application would."""
    ids: list[str] = []
    lock = threading.Lock()

    def run() -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            got = capture(ls, max(1, per_second // 40))
            with lock:
                ids.extend(got)
            time.sleep(0.1)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 30)
    return ids


def test_slow_server_spills_counts_slow_and_loses_nothing(
    collector: Collector, tmp_path: Path
) -> None:
    """A server answering after 3 s: batches spill (counted as slow), all arrive later."""
    collector.slow(3.0)
    ls = _client(collector, tmp_path, max_queue_items=400)
    ids = _produce(ls, 4.0, 400)
    during = ls.stats()
    assert during["slow"] >= 1
    assert "slow" in (during["last_error"] or "")
    assert during["spooled"] > 0
    assert during["dropped"] == 0
    assert_accounted(during, pending=None)
    collector.up()
    assert collector.wait_for(set(ids), timeout=30)
    assert ls.shutdown(5)
    stats = ls.stats()
    assert stats["dropped"] == 0
    assert_accounted(stats)


def test_hung_upload_never_holds_the_queue_hostage(collector: Collector, tmp_path: Path) -> None:
    """An upload that never answers: later batches go to the spool, none is dropped."""
    collector.black_hole()
    ls = _client(collector, tmp_path, max_queue_items=300)
    ids = _produce(ls, 3.0, 400)
    during = ls.stats()
    assert during["dropped"] == 0
    assert during["spooled"] > 0
    assert during["pending"] <= 300
    collector.up()
    assert collector.wait_for(set(ids), timeout=30)
    assert ls.shutdown(5)
    stats = ls.stats()
    assert stats["dropped"] == 0
    assert_accounted(stats)


def test_config_polls_keep_their_schedule_while_an_upload_hangs(
    collector: Collector, tmp_path: Path
) -> None:
    """With /v1/ingest hanging, config polls at refresh_seconds=1 still arrive each second."""
    collector.black_hole()
    ls = _client(collector, tmp_path, refresh_seconds=1.0, http_timeout=30.0)
    capture(ls, 60)
    assert collector.wait_requests(1)  # an upload is stuck
    start = time.monotonic()
    time.sleep(4.5)
    polls = [t for t in collector.gets if t >= start]
    gaps = [b - a for a, b in itertools.pairwise(polls)]
    assert len(polls) >= 3
    assert max(gaps) <= 1.0 * 1.1 + 1.0  # refresh_seconds (jittered) + 1 s
    ls.shutdown(1)


def test_dead_config_server_never_slows_uploads(collector: Collector, tmp_path: Path) -> None:
    """Config polls that hang (black-holed GETs) leave uploads flowing at once."""
    collector.hang_config()
    ls = _client(collector, tmp_path, refresh_seconds=1.0, http_timeout=30.0)
    ids = capture(ls, 30)
    assert collector.wait_for(set(ids), timeout=5)
    assert ls.stats()["sent"] == 30
    assert collector.gets  # the config poll was made, and is still hanging
    collector.up()
    ls.shutdown(1)
