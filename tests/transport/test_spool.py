"""The disk spool on real files: format, atomic claims, recovery, corruption, caps."""

from __future__ import annotations

import gzip
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

from logos_shift._transport.spool import Spool

DAY = 86400.0


def _spool(path: Path, max_bytes: int = 10**9, max_files: int = 10_000,
           max_age: float = 7 * DAY) -> Spool:  # fmt: skip
    return Spool(path, max_bytes, max_files, max_age)


def _lines(tag: str, n: int) -> list[bytes]:
    return [b'{"id": "%s-%d"}' % (tag.encode(), i) for i in range(n)]


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_one_fsynced_gzip_jsonl_file_per_batch(tmp_path: Path) -> None:
    """Each batch becomes one private gzip JSONL file named by time, pid and record count."""
    sp = _spool(tmp_path / "s")
    assert sp.write(_lines("a", 3))
    (f,) = list((tmp_path / "s").iterdir())
    assert f.name.endswith("-3.jsonl.gz")
    assert f.name.split("-")[1] == str(os.getpid())
    assert gzip.decompress(f.read_bytes()) == b"\n".join(_lines("a", 3)) + b"\n"
    assert f.stat().st_mode & 0o777 == 0o600
    assert sp.stats.written_files == 1


def test_claims_oldest_first_and_done_or_release(tmp_path: Path) -> None:
    """Batches are claimed oldest first; done deletes a batch, release puts it back."""
    sp = _spool(tmp_path)
    for tag in "abc":
        assert sp.write(_lines(tag, 2))
        time.sleep(0.002)  # distinct millisecond stamps
    first = sp.claim_oldest()
    assert first is not None
    assert first.lines == _lines("a", 2)
    assert re.search(rf"\.{os.getpid()}(-\d+)?\.inflight$", first.path.name)  # pid-start time
    assert sp.pending()[0] == 2
    first.release()
    again = sp.claim_oldest()
    assert again is not None
    assert again.lines == _lines("a", 2)
    again.done()
    rest = [sp.claim_oldest(), sp.claim_oldest(), sp.claim_oldest()]
    assert [c.lines if c else None for c in rest] == [_lines("b", 2), _lines("c", 2), None]


def test_concurrent_claimants_get_each_batch_once(tmp_path: Path) -> None:
    """Sixteen threads with their own Spool objects claim every batch exactly once."""
    writer = _spool(tmp_path)
    for i in range(100):
        assert writer.write(_lines(f"b{i}", 1))
    got: list[bytes] = []
    lock = threading.Lock()

    def drain() -> None:
        sp = _spool(tmp_path)
        while (claim := sp.claim_oldest()) is not None:
            with lock:
                got.extend(claim.lines)
            claim.done()

    threads = [threading.Thread(target=drain) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(got) == sorted(line for i in range(100) for line in _lines(f"b{i}", 1))
    assert list(tmp_path.iterdir()) == []


def test_recover_releases_dead_claims_and_stale_temp_files(tmp_path: Path) -> None:
    """Claims of dead processes return to the queue; live claims and fresh temp files stay."""
    sp = _spool(tmp_path)
    assert sp.write(_lines("dead", 1))
    assert sp.write(_lines("live", 1))
    dead_file, live_file = sorted(tmp_path.iterdir())
    dead_claim = dead_file.with_name(f"{dead_file.name}.{_dead_pid()}.inflight")
    os.rename(dead_file, dead_claim)
    live_claim = live_file.with_name(f"{live_file.name}.{os.getppid()}.inflight")
    os.rename(live_file, live_claim)
    stale_tmp = tmp_path / "0000000000001-1-0-1.jsonl.gz.tmp"
    stale_tmp.write_bytes(b"torn")
    os.utime(stale_tmp, (time.time() - 3600, time.time() - 3600))
    fresh_tmp = tmp_path / "0000000000002-1-0-1.jsonl.gz.tmp"
    fresh_tmp.write_bytes(b"being written")
    assert sp.recover() == 1
    assert dead_file.exists()
    assert live_claim.exists()
    assert not stale_tmp.exists()
    assert fresh_tmp.exists()
    claim = sp.claim_oldest()
    assert claim is not None
    assert claim.lines == _lines("dead", 1)


def test_recover_releases_claims_of_an_earlier_process_with_our_pid(tmp_path: Path) -> None:
    """A claim named with our pid that this process never made (pid reuse) is released."""
    sp = _spool(tmp_path)
    assert sp.write(_lines("earlier-run", 1))
    time.sleep(0.002)
    assert sp.write(_lines("ours", 1))
    earlier, _ = sorted(tmp_path.iterdir())
    os.rename(earlier, earlier.with_name(f"{earlier.name}.{os.getpid()}.inflight"))
    ours = sp.claim_oldest()  # a live claim of this very process
    assert ours is not None
    assert ours.lines == _lines("ours", 1)
    assert _spool(tmp_path).recover() == 1  # any Spool object of this process knows its claims
    assert earlier.exists()
    assert ours.path.exists()
    ours.done()
    again = sp.claim_oldest()
    assert again is not None
    assert again.lines == _lines("earlier-run", 1)


def test_corrupt_batch_is_quarantined_not_retried(tmp_path: Path) -> None:
    """A torn gzip file is set aside as .corrupt and counted; the next batch is served."""
    sp = _spool(tmp_path)
    assert sp.write(_lines("bad", 4))
    time.sleep(0.002)
    assert sp.write(_lines("good", 1))
    bad = sorted(tmp_path.iterdir())[0]
    bad.write_bytes(bad.read_bytes()[:-6])  # cut the gzip trailer (CRC + size)
    claim = sp.claim_oldest()
    assert claim is not None
    assert claim.lines == _lines("good", 1)
    assert sp.stats.corrupt_files == 1
    assert [p.name.endswith(".corrupt") for p in sorted(tmp_path.iterdir())].count(True) == 1


def test_file_cap_evicts_oldest_and_reports_own_records(tmp_path: Path) -> None:
    """Past spool_max_files the oldest batches go; this writer's own losses are reported."""
    other = _spool(tmp_path)  # another process or an earlier run
    assert other.write(_lines("other", 5))
    time.sleep(0.002)
    sp = _spool(tmp_path, max_files=2)
    for tag in "xyz":
        assert sp.write(_lines(tag, 3))
        time.sleep(0.002)
    assert sp.stats.evicted_records == 5 + 3
    assert sp.take_own_evictions() == {"spool_full": 3}
    assert sp.take_own_evictions() == {}
    left = []
    while (c := sp.claim_oldest()) is not None:
        left.extend(c.lines)
        c.done()
    assert left == _lines("y", 3) + _lines("z", 3)


def test_age_cap_expires_old_batches(tmp_path: Path) -> None:
    """Batches older than spool_max_age are removed as expired on the next write."""
    sp = _spool(tmp_path, max_age=60.0)
    assert sp.write(_lines("old", 2))
    (old,) = list(tmp_path.iterdir())
    os.utime(old, (time.time() - 120, time.time() - 120))
    assert sp.write(_lines("new", 1))
    assert not old.exists()
    assert sp.take_own_evictions() == {"spool_expired": 2}


def test_byte_cap_counts_the_incoming_batch(tmp_path: Path) -> None:
    """The byte cap holds after the write, and a batch that can never fit is refused."""
    sp = _spool(tmp_path, max_bytes=400)
    for i in range(10):
        assert sp.write(_lines(f"n{i}", 3))
        assert sum(p.stat().st_size for p in tmp_path.iterdir()) <= 400
    assert sp.stats.evicted_records > 0
    huge = [os.urandom(600)]  # incompressible
    assert not sp.write(huge)
    assert sp.stats.too_big == 1
    assert sp.available()  # a too-big batch does not take the spool offline


def test_unwritable_directory_is_reported_unavailable(tmp_path: Path) -> None:
    """A spool path under a regular file fails to write and is marked unavailable."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    sp = _spool(blocker / "spool")
    assert not sp.write(_lines("a", 1))
    assert sp.stats.write_errors == 1
    assert not sp.available()
    assert sp.claim_oldest() is None
    assert sp.recover() == 0
    assert sp.pending() == (0, 0)
