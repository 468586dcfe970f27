"""Outages over real sockets: down, black-holed, slow; full and unwritable spools."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import logos_shift
from tests.transport.collector import Collector, assert_accounted, capture

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def collector() -> Iterator[Collector]:
    """A running fake ingest server, every socket closed afterwards."""
    with Collector() as c:
        yield c


def _client(collector: Collector, spool: Path, **kw: Any) -> logos_shift.LogosShift:
    settings: dict[str, Any] = {
        "flush_interval": 0.05, "max_backoff": 0.2, "http_timeout": 2.0, **kw,
    }  # fmt: skip
    return logos_shift.LogosShift(
        server_url=collector.url, api_key="k", spool_dir=str(spool), **settings
    )


def _spooled_ids(spool: Path) -> list[str]:
    ids: list[str] = []
    for f in sorted(spool.rglob("*.jsonl.gz*")):
        for line in gzip.decompress(f.read_bytes()).splitlines():
            ids.append(json.loads(line)["id"])
    return ids


def test_outage_then_back_every_record_arrives_once(collector: Collector, tmp_path: Path) -> None:
    """Records captured before, during and after an outage all arrive, none twice after dedup."""
    ls = _client(collector, tmp_path / "spool")
    ids = capture(ls, 10)
    assert collector.wait_for(set(ids))
    collector.down()
    for _ in range(5):  # several batches while the server is away
        ids += capture(ls, 20)
        time.sleep(0.1)
    assert ls.flush(5)
    during = ls.stats()
    assert during["spooled"] > 0
    assert during["consecutive_failures"] > 0
    collector.up()
    ids += capture(ls, 10)
    assert collector.wait_for(set(ids))
    assert ls.shutdown(2)
    got = collector.ids()
    assert set(got) == set(ids)
    assert len(ids) == 120
    stats = ls.stats()
    assert stats["dropped"] == 0
    assert stats["replayed"] == stats["spooled"]
    assert_accounted(stats)
    assert _spooled_ids(tmp_path / "spool") == []


def test_shutdown_black_holed_ends_in_time_and_spills_everything(
    collector: Collector, tmp_path: Path
) -> None:
    """Shutdown with a black-holed server returns within its deadline with every record spooled."""
    collector.black_hole()
    ls = _client(collector, tmp_path / "spool", http_timeout=15.0)
    ids = capture(ls, 30)
    assert collector.wait_requests(1)  # an upload is now stuck in the black hole
    ids += capture(ls, 30)
    start = time.monotonic()
    ls.shutdown(timeout=1)
    elapsed = time.monotonic() - start
    assert elapsed < 3.0
    stats = ls.stats()
    assert stats["spooled"] == stats["captured"] == 60
    assert_accounted(stats)
    assert sorted(_spooled_ids(tmp_path / "spool")) == sorted(ids)
    # Back online, the next run of the program delivers the spool.
    collector.up()
    ls2 = _client(collector, tmp_path / "spool")
    assert ls2.flush(5)
    assert collector.wait_for(set(ids))
    assert ls2.shutdown(2)
    assert _spooled_ids(tmp_path / "spool") == []


def test_shutdown_ends_in_time_when_every_request_hangs(
    collector: Collector, tmp_path: Path
) -> None:
    """With config polls and uploads both black-holed, shutdown still spools everything in time."""
    collector.black_hole(everything=True)
    ls = _client(collector, tmp_path / "spool", http_timeout=15.0)
    ids = capture(ls, 40)
    time.sleep(0.3)  # the worker is now stuck in the config poll or an upload
    start = time.monotonic()
    ls.shutdown(timeout=1)
    assert time.monotonic() - start < 3.0
    stats = ls.stats()
    assert stats["spooled"] == stats["captured"] == 40
    assert_accounted(stats)
    assert sorted(_spooled_ids(tmp_path / "spool")) == sorted(ids)


def test_shutdown_with_server_down_spools_and_restart_replays(
    collector: Collector, tmp_path: Path
) -> None:
    """Records captured with the server down are spooled at shutdown and sent by the next run."""
    collector.down()
    ls = _client(collector, tmp_path / "spool", flush_interval=10.0)
    ids = capture(ls, 25)
    assert ls.shutdown(2)
    stats = ls.stats()
    assert stats["spooled"] == 25
    assert_accounted(stats)
    collector.up()
    ls2 = _client(collector, tmp_path / "spool")
    assert ls2.flush(5)
    assert collector.wait_for(set(ids))
    assert ls2.shutdown(2)
    assert sorted(collector.ids()) == sorted(ids)
    assert ls2.stats()["replayed"] == 25


def test_slow_server_past_the_timeout_is_retried(collector: Collector, tmp_path: Path) -> None:
    """A server slower than http_timeout counts as a failure and the records arrive later."""
    collector.slow(1.0)
    ls = _client(collector, tmp_path / "spool", http_timeout=0.3)
    ids = capture(ls, 10)
    assert ls.flush(5)
    assert ls.stats()["spooled"] >= 10  # the slow answer came too late
    collector.up()
    assert collector.wait_for(set(ids))
    assert ls.shutdown(2)
    assert set(collector.ids()) == set(ids)  # at-least-once: the slow 200 may duplicate
    assert_accounted(ls.stats())


def test_full_spool_evicts_oldest_and_counts_it(collector: Collector, tmp_path: Path) -> None:
    """With the spool at its file cap the oldest batches are evicted and counted as spool_full."""
    collector.down()
    ls = _client(collector, tmp_path / "spool", spool_max_files=3, batch_size=5)
    ids: list[str] = []
    for _ in range(6):  # six spool files of five records
        ids += capture(ls, 5)
        assert ls.flush(5)
    stats = ls.stats()
    assert stats["dropped_by_reason"] == {"spool_full": 15}
    assert stats["spooled"] == 15
    assert stats["spool"]["evicted_records"] == 15
    assert_accounted(stats)
    left = _spooled_ids(tmp_path / "spool")
    assert left == ids[15:]  # the newest three batches survive
    collector.up()
    ls2 = _client(collector, tmp_path / "spool")
    assert ls2.flush(5)
    assert collector.wait_for(set(ids[15:]))
    ls.shutdown(1)
    ls2.shutdown(2)


def test_spool_byte_cap_evicts_oldest(collector: Collector, tmp_path: Path) -> None:
    """A tiny spool_max_bytes keeps only the newest batches that fit, counting the rest."""
    collector.down()
    ls = _client(collector, tmp_path / "spool", spool_max_bytes=1500, batch_size=5)
    for _ in range(6):
        capture(ls, 5)
        assert ls.flush(5)
    stats = ls.stats()
    files = list((tmp_path / "spool").rglob("*.jsonl.gz"))
    assert sum(f.stat().st_size for f in files) <= 1500
    assert stats["dropped_by_reason"]["spool_full"] > 0
    assert stats["spooled"] == len(_spooled_ids(tmp_path / "spool"))
    assert_accounted(stats)
    ls.shutdown(1)


def test_unwritable_spool_degrades_to_memory_and_counts_it(
    collector: Collector, tmp_path: Path
) -> None:
    """An unusable spool directory keeps failed batches in memory, counted, then sends them."""
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a regular file: nothing can be created below it, even by root")
    collector.down()
    ls = _client(collector, blocker / "spool")
    ids = capture(ls, 20)
    assert not ls.flush(0.5)  # held in memory: not sent, not spooled
    stats = ls.stats()
    assert stats["spool"]["available"] is False
    assert stats["spool"]["write_errors"] >= 1
    assert stats["pending"] == 20
    assert stats["spooled"] == 0
    assert_accounted(stats, pending=None)
    collector.up()
    assert collector.wait_for(set(ids))
    assert ls.flush(5)
    assert ls.shutdown(2)
    stats = ls.stats()
    assert stats["sent"] == 20
    assert_accounted(stats)


def test_unwritable_spool_at_shutdown_drops_and_counts(
    collector: Collector, tmp_path: Path
) -> None:
    """At shutdown with the server down and no usable spool, records are dropped and counted."""
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    collector.down()
    ls = _client(collector, blocker / "spool")
    capture(ls, 20)
    assert ls.shutdown(1)
    stats = ls.stats()
    assert stats["dropped_by_reason"] == {"spool_unavailable": 20}
    assert_accounted(stats)


FULL_DISK = """
import json, os, resource, signal, sys, time
import logos_shift

ls = logos_shift.LogosShift(server_url=sys.argv[1], api_key="k", spool_dir=sys.argv[2],
                            flush_interval=0.05, max_backoff=0.2)
# From here on no file may grow past 512 bytes: every spool write fails
# like on a full disk (EFBIG instead of ENOSPC, through the same code path).
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (512, 512))

@ls()
def work(blob):
    return {"n": len(blob)}

ids = [work(os.urandom(400).hex())["logos_shift_id"] for _ in range(10)]
ls.flush(1)
print(json.dumps({"ids": ids, "stats": ls.stats()}), flush=True)
sys.stdin.readline()  # the server is back
end = time.monotonic() + 10
while ls.stats()["pending"] and time.monotonic() < end:
    time.sleep(0.02)
ls.shutdown(2)
print(json.dumps(ls.stats()), flush=True)
"""


def test_full_disk_spool_degrades_to_memory_and_counts_it(
    collector: Collector, tmp_path: Path
) -> None:
    """When the disk refuses spool writes, failed batches wait in memory, counted, until sent."""
    collector.down()
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(FULL_DISK), collector.url, str(tmp_path / "spool")],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdin is not None
    assert proc.stdout is not None
    first = json.loads(proc.stdout.readline() or "{}")
    during = first["stats"]
    assert during["spool"]["write_errors"] >= 1
    assert during["spool"]["available"] is False
    assert during["spooled"] == 0
    assert during["pending"] == 10  # held in memory
    assert_accounted(during, pending=None)
    collector.up()
    proc.stdin.write("go\n")
    proc.stdin.flush()
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    after = json.loads(out.strip().splitlines()[-1])
    assert after["sent"] == 10
    assert_accounted(after)
    assert sorted(collector.ids()) == sorted(first["ids"])
