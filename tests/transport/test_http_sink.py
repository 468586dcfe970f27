"""The HTTP sink against a real local ingest server: headers, retries, 429, 413, 4xx."""

from __future__ import annotations

import email.utils
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import logos_shift
from logos_shift._transport.sinks import parse_retry_after
from tests.transport.collector import Collector, assert_accounted, capture


@pytest.fixture
def collector() -> Iterator[Collector]:
    """A running fake ingest server, every socket closed afterwards."""
    with Collector() as c:
        yield c


def _client(collector: Collector, tmp_path: Path, **kw: Any) -> logos_shift.LogosShift:
    settings: dict[str, Any] = {
        "flush_interval": 0.05, "max_backoff": 0.2, "http_timeout": 2.0, **kw,
    }  # fmt: skip
    return logos_shift.LogosShift(
        server_url=collector.url, api_key="k", spool_dir=str(tmp_path / "spool"), **settings
    )


def test_gzip_body_bearer_key_and_batch_id(collector: Collector, tmp_path: Path) -> None:
    """Each batch is a gzip'd JSON array with a Bearer key and its own X-Batch-Id."""
    ls = _client(collector, tmp_path, batch_size=4)
    ids = capture(ls, 10)
    assert ls.flush(5)
    assert ls.shutdown(2)
    reqs = collector.accepted()
    assert sorted(collector.ids()) == sorted(ids)
    assert len(reqs) >= 3  # 10 records in batches of at most 4
    assert all(len(r.ids) <= 4 for r in reqs)
    assert {r.encoding for r in reqs} == {"gzip"}
    assert {r.auth for r in reqs} == {"Bearer k"}
    batch_ids = [r.batch_id for r in reqs]
    assert all(batch_ids)
    assert len(set(batch_ids)) == len(batch_ids)
    stats = ls.stats()
    assert stats["sent"] == 10
    assert_accounted(stats)


def test_500_then_recovery_delivers_everything(collector: Collector, tmp_path: Path) -> None:
    """After a run of 500s the server recovers and every record arrives."""
    collector.fail(500, times=3)
    ls = _client(collector, tmp_path)
    ids = capture(ls, 20)
    assert ls.flush(5)
    assert collector.wait_for(set(ids))
    assert ls.shutdown(2)
    assert [r.status for r in collector.requests[:3]] == [500, 500, 500]
    # A batch keeps its X-Batch-Id across retries; different batches differ.
    by_content: dict[tuple[str, ...], set[str | None]] = {}
    for r in collector.requests:
        by_content.setdefault(tuple(r.ids), set()).add(r.batch_id)
    assert all(len(b) == 1 for b in by_content.values())
    assert len({next(iter(b)) for b in by_content.values()}) == len(by_content)
    stats = ls.stats()
    assert stats["retries"] >= 3
    assert stats["dropped"] == 0
    assert_accounted(stats)


def test_429_retry_after_seconds_is_honoured(collector: Collector, tmp_path: Path) -> None:
    """No request reaches the server before a 429's Retry-After (in seconds) has elapsed."""
    collector.fail(429, times=1, retry_after="1")
    ls = _client(collector, tmp_path)
    ids = capture(ls, 5)
    assert collector.wait_requests(1)
    ids += capture(ls, 5)  # new batches during the wait must not be sent early either
    assert collector.wait_for(set(ids))
    assert ls.shutdown(2)
    first, *rest = collector.requests
    assert first.status == 429
    assert rest
    assert min(r.mono for r in rest) - first.mono >= 1.0
    assert_accounted(ls.stats())


def test_429_retry_after_http_date_is_honoured(collector: Collector, tmp_path: Path) -> None:
    """No request reaches the server before a 429's Retry-After HTTP date."""
    when = int(time.time()) + 2
    collector.fail(429, times=1, retry_after=email.utils.formatdate(when, usegmt=True))
    ls = _client(collector, tmp_path)
    ids = capture(ls, 5)
    assert collector.wait_for(set(ids))
    assert ls.shutdown(2)
    first, *rest = collector.requests
    assert first.status == 429
    assert min(r.wall for r in rest) >= when
    assert_accounted(ls.stats())


def test_413_splits_the_batch_until_it_fits(collector: Collector, tmp_path: Path) -> None:
    """A 413 splits the batch in halves and every record still arrives once."""
    collector.too_large(3)
    ls = _client(collector, tmp_path, flush_interval=10.0)
    ids = capture(ls, 20)
    assert ls.flush(5)
    assert ls.shutdown(2)
    assert sorted(collector.ids()) == sorted(ids)
    assert any(r.status == 413 for r in collector.requests)
    assert all(len(r.ids) <= 3 for r in collector.accepted())
    stats = ls.stats()
    assert stats["sent"] == 20
    assert stats["dropped"] == 0
    assert_accounted(stats)


def test_413_on_a_single_record_drops_it_as_rejected(collector: Collector, tmp_path: Path) -> None:
    """A single record that still gets 413 is dropped as rejected, not retried forever."""
    collector.too_large(0)
    ls = _client(collector, tmp_path, flush_interval=10.0)
    capture(ls, 2)
    assert ls.flush(5)
    assert ls.shutdown(2)
    stats = ls.stats()
    assert stats["dropped_by_reason"] == {"rejected": 2}
    assert stats["spooled"] == 0
    assert len(collector.requests) == 3  # the pair, then each half once
    assert_accounted(stats)


def test_other_4xx_is_rejected_and_not_retried(collector: Collector, tmp_path: Path) -> None:
    """A 400 counts the batch as dropped ``rejected`` and it is never sent again."""
    collector.fail(400)
    ls = _client(collector, tmp_path, flush_interval=10.0)
    capture(ls, 5)
    assert ls.flush(5)
    collector.up()
    ids = capture(ls, 3)
    assert ls.flush(5)
    assert ls.shutdown(2)
    assert [r.status for r in collector.requests] == [400, 200]
    assert collector.ids() == ids
    stats = ls.stats()
    assert stats["dropped_by_reason"] == {"rejected": 5}
    assert stats["sent"] == 3
    assert stats["retries"] == 0
    assert_accounted(stats)


def test_spooled_batch_rejected_on_replay_is_deleted_not_retried(
    collector: Collector, tmp_path: Path
) -> None:
    """A spooled batch rejected with a 4xx on replay is counted and removed, not retried."""
    collector.down()
    ls = _client(collector, tmp_path, flush_interval=10.0)
    capture(ls, 5)
    assert ls.shutdown(2)
    assert ls.stats()["spooled"] == 5
    collector.up()
    collector.fail(422)
    ls2 = _client(collector, tmp_path)
    assert ls2.flush(5)
    assert ls2.shutdown(2)
    assert [r.status for r in collector.requests] == [422]
    assert ls2.stats()["replay_rejected"] == 5
    assert list((tmp_path / "spool").rglob("*.jsonl.gz*")) == []


def test_per_record_errors_count_as_rejected(collector: Collector, tmp_path: Path) -> None:
    """Records the server marks as errors in a 200 answer are dropped as rejected, not resent."""
    collector.partial_errors(every=3)
    ls = _client(collector, tmp_path, flush_interval=10.0)
    ids = capture(ls, 9)
    assert ls.flush(5)
    assert ls.shutdown(2)
    assert len(collector.requests) == 1
    assert collector.ids() == [i for k, i in enumerate(ids) if k % 3]
    stats = ls.stats()
    assert stats["sent"] == 6
    assert stats["dropped_by_reason"] == {"rejected": 3}
    assert_accounted(stats)


def test_backoff_is_capped_so_recovery_is_prompt(collector: Collector, tmp_path: Path) -> None:
    """After many failures the capped backoff (max_backoff) still retries soon after recovery."""
    collector.fail(503)
    ls = _client(collector, tmp_path)
    ids: list[str] = []
    for _ in range(1000):
        if ls.stats()["consecutive_failures"] >= 8:  # uncapped, the next wait would be ~2 min
            break
        ids += capture(ls, 1)
        time.sleep(0.02)
    assert ls.stats()["consecutive_failures"] >= 8
    collector.up()
    assert collector.wait_for(set(ids), timeout=10)
    assert ls.shutdown(2)
    assert collector.duplicates() == {}
    assert_accounted(ls.stats())


def test_full_jitter_delays_are_spread_and_capped(tmp_path: Path) -> None:
    """Retry delays are uniform up to min(max_backoff, 0.5 * 2**n) and honour Retry-After."""
    ls = logos_shift.LogosShift(
        server_url="http://127.0.0.1:9", api_key="k", spool_dir=str(tmp_path), max_backoff=3.0
    )
    ch = ls._channel
    delays: list[float] = []
    for _ in range(400):
        ch.failures = 0
        ch._failed(None, "x")  # first failure: cap 1 s
        delays.append(ch.next_attempt - time.monotonic())
    assert max(delays) <= 1.0
    assert statistics.pstdev(delays) > 0.2  # uniform on [0, 1] has sd ~0.29
    for _ in range(20):
        ch._failed(None, "x")
        assert ch.next_attempt - time.monotonic() <= 3.0
    ch._failed(7.0, "x")
    assert ch.next_attempt - time.monotonic() > 6.9
    ls.shutdown(0.5)


def test_retry_after_parsing() -> None:
    """Retry-After is read as seconds or an HTTP date, clamped to [0, 300] s."""
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after("99999") == 300.0
    assert parse_retry_after("-5") == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None
    future = parse_retry_after(email.utils.formatdate(time.time() + 30, usegmt=True))
    assert future is not None
    assert 25 < future <= 30
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
