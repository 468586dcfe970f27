"""A spool that heals: foreign names, absurd pids, FIFOs, unreadable files, reused pids."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import logos_shift
from logos_shift._transport.spool import Spool, start_time
from logos_shift.cli import main
from tests.transport.collector import Collector, assert_accounted, capture

DAY = 86400.0


@pytest.fixture
def collector() -> Iterator[Collector]:
    """A running fake ingest server, every socket closed afterwards."""
    with Collector() as c:
        yield c


def _spool(path: Path) -> Spool:
    return Spool(path, 10**9, 10_000, 7 * DAY)


def _lines(tag: str, n: int) -> list[bytes]:
    return [b'{"id": "%s-%d"}' % (tag.encode(), i) for i in range(n)]


def _client(collector: Collector, spool: Path) -> logos_shift.LogosShift:
    return logos_shift.LogosShift(
        server_url=collector.url, api_key="k", spool_dir=str(spool), flush_interval=0.05,
        max_backoff=0.2, http_timeout=2.0, wait_for_config=0,
    )  # fmt: skip


def _dest(spool: Path, collector: Collector) -> Path:
    """The destination directory a client of ``collector`` uses (made by a first write)."""
    collector.down()
    ls = _client(collector, spool)
    capture(ls, 1)
    assert ls.shutdown(2)
    collector.up()
    (dest,) = [p for p in spool.iterdir() if p.is_dir()]
    return dest


def test_foreign_entries_are_skipped_counted_and_never_block_replay(
    collector: Collector, tmp_path: Path
) -> None:
    """garbage.inflight, a 20-digit pid, a FIFO and a directory named *.jsonl.gz block nothing."""
    spool = tmp_path / "spool"
    dest = _dest(spool, collector)
    (dest / "garbage.inflight").write_text("x")
    (dest / "notes.jsonl.gz").write_text("not a batch name")
    os.mkfifo(dest / "1700000000000-1-aaaaaaaa-bbbbbbbb-5.jsonl.gz")
    (dest / "1700000000001-1-aaaaaaaa-cccccccc-5.jsonl.gz").mkdir()
    real = _spool(tmp_path / "elsewhere")
    assert real.write(_lines("huge-pid", 3))
    (batch,) = list((tmp_path / "elsewhere").iterdir())
    os.rename(batch, dest / f"{batch.name}.{'9' * 20}.inflight")  # a claim with an absurd pid
    ls = _client(collector, spool)
    ids = capture(ls, 20)
    assert collector.wait_for(set(ids) | {f"huge-pid-{i}" for i in range(3)}, timeout=15)
    assert ls.flush(5)
    stats = ls.stats()
    assert stats["spool"]["skipped_files"] >= 4
    assert stats["dropped"] == 0
    assert ls.shutdown(2)
    assert_accounted(ls.stats())


def test_fifo_named_like_a_batch_never_blocks_a_read(tmp_path: Path) -> None:
    """A FIFO is never opened blocking; the real batch behind it is served."""
    sp = _spool(tmp_path)
    os.mkfifo(tmp_path / "0000000000001-1-aaaaaaaa-bbbbbbbb-2.jsonl.gz")
    assert sp.write(_lines("real", 2))
    got: list[object] = []
    t = threading.Thread(target=lambda: got.append(sp.claim_oldest()), daemon=True)
    t.start()
    t.join(10)
    assert not t.is_alive()
    claim = got[0]
    assert claim is not None
    assert claim.lines == _lines("real", 2)  # type: ignore[attr-defined]
    assert sp.stats.skipped_files == 1


UNREADABLE_CHECK = """
import json, sys
from pathlib import Path
from logos_shift._transport.spool import Spool

sp = Spool(Path(sys.argv[1]), 10**9, 10_000, 1e9)
first = sp.claim_oldest()
print(json.dumps([first is None, sp.stats.unreadable_files, sp.stats.corrupt_files]))
"""


def test_another_users_batch_is_retried_later_not_quarantined() -> None:
    """Another user's 0600 batch stays in line (counted as unreadable), never quarantined."""
    if os.geteuid() != 0:
        pytest.skip("needs root to act as another user")
    shared = Path(tempfile.mkdtemp(prefix="logos-spool-"))
    try:
        shared.chmod(0o777)
        sp = _spool(shared)
        assert sp.write(_lines("locked", 2))  # root's 0600 file
        (f,) = list(shared.iterdir())
        try:
            proc = subprocess.run(
                [sys.executable, "-c", UNREADABLE_CHECK, str(shared)], capture_output=True,
                text=True, timeout=30, user=65534, env={**os.environ, "HOME": "/tmp"},
                cwd=str(Path(__file__).resolve().parents[2]),
            )  # fmt: skip
        except PermissionError:
            pytest.skip("the interpreter is not executable by another user here")
        if proc.returncode != 0 and "Error" in proc.stderr and "Permission" in proc.stderr:
            pytest.skip("the package is not importable as another user here")
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout) == [True, 1, 0]
        assert f.exists()  # back in line, not quarantined
        claim = sp.claim_oldest()  # its owner reads it fine
        assert claim is not None
        assert claim.lines == _lines("locked", 2)
    finally:
        shutil.rmtree(shared, ignore_errors=True)


def test_claim_of_a_live_pid_with_another_start_time_is_released(tmp_path: Path) -> None:
    """A reused pid does not keep a dead process's claim; the owner's stays, however old."""
    if start_time(os.getpid()) is None:
        pytest.skip("process start times are not available here")
    sp = _spool(tmp_path)
    assert sp.write(_lines("reused", 1))
    assert sp.write(_lines("owned", 1))
    reused, owned = sorted(tmp_path.iterdir())
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        true_start = start_time(live.pid)
        assert true_start is not None
        os.rename(reused, reused.with_name(f"{reused.name}.{live.pid}-{true_start - 1}.inflight"))
        kept = owned.with_name(f"{owned.name}.{live.pid}-{true_start}.inflight")
        os.rename(owned, kept)
        os.utime(kept, (0, 0))  # very old: age no longer matters
        assert sp.recover() == 1
        assert reused.exists()
        assert kept.exists()
    finally:
        live.kill()
        live.wait()
    assert sp.recover() == 1  # the owner is gone now
    assert owned.exists()


def test_quarantined_batches_are_listed_and_replayed_by_the_cli(
    collector: Collector, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A corrupt batch shows in stats() and `spool list`; after a fix `spool replay` uploads it."""
    spool = tmp_path / "spool"
    dest = _dest(spool, collector)
    good = _spool(tmp_path / "src")
    assert good.write(_lines("fixed", 4))
    (src,) = list((tmp_path / "src").iterdir())
    payload = src.read_bytes()
    bad = dest / src.name
    bad.write_bytes(payload[: len(payload) // 2])  # torn
    ls = _client(collector, spool)
    end = time.monotonic() + 15
    while not ls.stats()["spool"]["quarantined"] and time.monotonic() < end:
        time.sleep(0.05)
    quarantined = ls.stats()["spool"]["quarantined"]
    assert len(quarantined) == 1
    assert ls.shutdown(2)
    assert main(["spool", "list", "--spool-dir", str(spool), "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert listing["destinations"][0]["quarantined"] == quarantined
    Path(quarantined[0]).write_bytes(payload)  # the fix
    assert main(["spool", "replay", "--spool-dir", str(spool), "--json",
                 "--server-url", collector.url, "--api-key", "k"]) == 0  # fmt: skip
    summary = json.loads(capsys.readouterr().out)
    assert summary["requeued"] == 1
    assert {f"fixed-{i}" for i in range(4)} <= set(collector.ids())
    assert gzip.decompress(payload)  # the fixture batch itself was valid
