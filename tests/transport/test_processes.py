"""Real processes: kill -9 and restart, fork, 8 processes sharing a spool, exit flushes."""

from __future__ import annotations

import gzip
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import pytest

import logos_shift
from tests.transport.collector import Collector, assert_accounted, capture

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.slow,
    # Python >= 3.12 warns about fork() in a process with threads; the
    # library is built for exactly that (os.register_at_fork).
    pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning"),
]


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


def _spool_files(spool: Path) -> list[Path]:
    return [p for p in spool.rglob("*") if p.name.endswith((".jsonl.gz", ".inflight"))]


def _spooled_ids(spool: Path) -> list[str]:
    ids: list[str] = []
    for f in sorted(_spool_files(spool)):
        for line in gzip.decompress(f.read_bytes()).splitlines():
            ids.append(json.loads(line)["id"])
    return ids


def _python(script: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _wait_until_empty(spool: Path, timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if not _spool_files(spool):
            return True
        time.sleep(0.02)
    return False


CAPTURE_THEN_SPIN = """
import json, sys, time
import logos_shift

ls = logos_shift.LogosShift(server_url=sys.argv[1], api_key="k", spool_dir=sys.argv[2],
                            flush_interval=0.05, http_timeout=0.3, max_backoff=0.2)

@ls()
def work(i):
    return {"i": i}

ids = [work(i)["logos_shift_id"] for i in range(40)]
end = time.monotonic() + 20
while ls.stats()["spooled"] < len(ids) and time.monotonic() < end:
    time.sleep(0.02)
print(json.dumps(ids), flush=True)
i = 0
while True:  # keep capturing and uploading into the black hole until killed
    work(i)
    i += 1
    time.sleep(0.005)
"""


def test_kill_9_mid_upload_then_restart_delivers_spool(
    collector: Collector, tmp_path: Path
) -> None:
    """After kill -9 of a process stuck uploading, a restart delivers every spooled record once."""
    spool = tmp_path / "spool"
    collector.black_hole()
    proc = _python(CAPTURE_THEN_SPIN, collector.url, str(spool))
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line, proc.stderr.read() if proc.stderr else ""
        reported = json.loads(line)
        seen = len(collector.requests)
        assert collector.wait_requests(seen + 1)  # an upload is hanging right now
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    expected = _spooled_ids(spool)
    assert set(reported) <= set(expected)  # what the process confirmed spooled survived
    collector.up()
    ls = _client(collector, spool)
    assert ls.flush(5)
    assert collector.wait_for(set(expected))
    assert _wait_until_empty(spool)
    assert ls.shutdown(2)
    assert collector.duplicates() == {}
    assert ls.stats()["replayed"] == len(expected)


def test_forked_child_sends_its_own_records_not_the_parents(
    collector: Collector, tmp_path: Path
) -> None:
    """An os.fork child uploads what it captures and never resends the parent's queued records."""
    ls = _client(collector, tmp_path / "spool", flush_interval=10.0)
    parent_ids = capture(ls, 10)  # queued in the parent, not yet sent
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        code = 1
        try:
            os.close(read_fd)
            child_ids = capture(ls, 7)
            ok = ls.shutdown(5)
            report = {"ids": child_ids, "ok": ok, "stats": ls.stats()}
            os.write(write_fd, json.dumps(report).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as f:
        report = json.loads(f.read() or b"{}")
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert report["ok"]
    child_stats = report["stats"]
    assert child_stats["captured"] == child_stats["sent"] == 7
    assert_accounted(child_stats)
    parent_more = capture(ls, 3)
    assert ls.shutdown(2)
    counts = Counter(collector.ids())
    assert set(counts) == set(parent_ids) | set(parent_more) | set(report["ids"])
    assert set(counts.values()) == {1}
    stats = ls.stats()
    assert stats["captured"] == stats["sent"] == 13
    assert_accounted(stats)


def test_fork_while_another_thread_captures_never_deadlocks(
    collector: Collector, tmp_path: Path
) -> None:
    """Children forked while a thread is busy capturing (holding the queue lock) still deliver."""
    ls = _client(collector, tmp_path / "spool")
    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            capture(ls, 20)

    busy = threading.Thread(target=hammer)
    busy.start()
    children: dict[int, int] = {}
    try:
        for _ in range(5):
            time.sleep(0.02)
            read_fd, write_fd = os.pipe()
            pid = os.fork()
            if pid == 0:  # pragma: no cover - the child reports through the pipe
                code = 1
                try:
                    os.close(read_fd)
                    ids = capture(ls, 3)
                    ok = ls.shutdown(5)
                    os.write(write_fd, json.dumps(ids if ok else []).encode())
                    code = 0
                finally:
                    os._exit(code)
            os.close(write_fd)
            children[pid] = read_fd
    finally:
        stop.set()
        busy.join(10)
    child_ids: list[str] = []
    for pid, read_fd in children.items():
        end = time.monotonic() + 20
        while os.waitpid(pid, os.WNOHANG) == (0, 0):
            if time.monotonic() > end:  # a deadlocked child: fail, don't hang
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                pytest.fail("a forked child deadlocked")
            time.sleep(0.02)
        with os.fdopen(read_fd, "rb") as f:
            got = json.loads(f.read() or b"[]")
        assert len(got) == 3
        child_ids += got
    assert ls.shutdown(5)
    assert collector.wait_for(set(child_ids), timeout=5)
    assert collector.duplicates() == {}
    stats = ls.stats()
    # A hammering thread may push the queue past its high-water mark: those
    # batches are spooled (to be replayed), never dropped.
    assert stats["sent"] + stats["spooled"] == stats["captured"]
    assert_accounted(stats)


REPLAY_SHARED_SPOOL = """
import json, pathlib, sys, time
import logos_shift

ls = logos_shift.LogosShift(server_url=sys.argv[1], api_key="k", spool_dir=sys.argv[2],
                            flush_interval=0.05)
root = pathlib.Path(sys.argv[2])
end = time.monotonic() + 30
while time.monotonic() < end:
    ls.flush(5)
    if not any(p.name.endswith((".jsonl.gz", ".inflight")) for p in root.rglob("*")):
        break
ls.shutdown(5)
print(json.dumps(ls.stats()["replayed"]))
"""


def test_eight_processes_sharing_a_spool_deliver_each_batch_once(
    collector: Collector, tmp_path: Path
) -> None:
    """Eight processes draining one spool together deliver every record exactly once."""
    spool = tmp_path / "spool"
    collector.down()
    ls = _client(collector, spool, flush_interval=10.0, batch_size=5)
    ids: list[str] = []
    for _ in range(40):
        ids += capture(ls, 5)
        assert ls.flush(5)
    assert ls.shutdown(2)
    assert len(_spool_files(spool)) == 40
    collector.up()
    procs = [_python(REPLAY_SHARED_SPOOL, collector.url, str(spool)) for _ in range(8)]
    replayed = []
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        replayed.append(json.loads(out.strip().splitlines()[-1]))
    assert sum(replayed) == 200
    assert collector.duplicates() == {}
    assert sorted(collector.ids()) == sorted(ids)
    assert _spool_files(spool) == []


CAPTURE_AND_EXIT = """
import json, sys
import logos_shift

ls = logos_shift.LogosShift(server_url=sys.argv[1], api_key="k", spool_dir=sys.argv[2],
                            flush_interval=60.0, shutdown_timeout=2.0)

@ls()
def work(i):
    return {"i": i}

print(json.dumps([work(i)["logos_shift_id"] for i in range(25)]), flush=True)
# No flush, no shutdown: the atexit hook must deliver them.
"""


def test_normal_exit_delivers_through_atexit(collector: Collector, tmp_path: Path) -> None:
    """A process that captures and simply exits delivers its records via the atexit flush."""
    proc = _python(CAPTURE_AND_EXIT, collector.url, str(tmp_path / "spool"))
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    ids = json.loads(out.splitlines()[0])
    assert sorted(collector.ids()) == sorted(ids)


def test_normal_exit_with_server_down_spools_within_deadline(
    collector: Collector, tmp_path: Path
) -> None:
    """Exiting while the server is down spools every record, and the next run sends them."""
    spool = tmp_path / "spool"
    collector.down()
    proc = _python(CAPTURE_AND_EXIT, collector.url, str(spool))
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    ids = json.loads(out.splitlines()[0])
    assert sorted(_spooled_ids(spool)) == sorted(ids)
    collector.up()
    ls = _client(collector, spool)
    assert ls.flush(5)
    assert collector.wait_for(set(ids))
    assert ls.shutdown(2)


EXIT_WHILE_STUCK = """
import json, sys, time
import logos_shift

ls = logos_shift.LogosShift(server_url=sys.argv[1], api_key="k", spool_dir=sys.argv[2],
                            flush_interval=0.05, shutdown_timeout=2.0)

@ls()
def work(i):
    return {"i": i}

ids = [work(i)["logos_shift_id"] for i in range(25)]
time.sleep(0.5)  # an upload is now hanging in the black hole (15 s read timeout)
ids += [work(i)["logos_shift_id"] for i in range(5)]
print(json.dumps(ids), flush=True)
"""


def test_exit_with_a_black_holed_upload_spools_within_the_deadline(
    collector: Collector, tmp_path: Path
) -> None:
    """A process exiting while its upload hangs ends within shutdown_timeout, all spooled."""
    spool = tmp_path / "spool"
    collector.black_hole()
    start = time.monotonic()
    proc = _python(EXIT_WHILE_STUCK, collector.url, str(spool))
    out, err = proc.communicate(timeout=30)
    elapsed = time.monotonic() - start
    assert proc.returncode == 0, err
    assert elapsed < 8.0  # 0.5 s of work + a 2 s exit deadline + interpreter start
    ids = json.loads(out.splitlines()[0])
    assert collector.requests  # the upload really was in flight
    assert sorted(_spooled_ids(spool)) == sorted(ids)


def _mp_child_own_instance(url: str, spool: str, conn: Connection) -> None:
    ls = logos_shift.LogosShift(server_url=url, api_key="k", spool_dir=spool, flush_interval=60.0)
    conn.send(capture(ls, 12))
    conn.close()
    # Returns without flushing: multiprocessing ends the child with os._exit.


def _mp_child_inherited(ls: logos_shift.LogosShift, conn: Connection) -> None:
    conn.send(capture(ls, 9))
    conn.close()


def test_multiprocessing_fork_child_flushes_at_exit(collector: Collector, tmp_path: Path) -> None:
    """A multiprocessing (fork) child's records are delivered by the exit finaliser."""
    ctx = multiprocessing.get_context("fork")
    recv, send = ctx.Pipe(duplex=False)
    p = ctx.Process(target=_mp_child_own_instance, args=(collector.url, str(tmp_path), send))
    p.start()
    send.close()
    ids = recv.recv()
    recv.close()
    p.join(30)
    assert p.exitcode == 0
    assert sorted(collector.ids()) == sorted(ids)


def test_multiprocessing_child_using_parents_instance_flushes_at_exit(
    collector: Collector, tmp_path: Path
) -> None:
    """A fork child capturing through an instance made in the parent still flushes at exit."""
    ls = _client(collector, tmp_path / "spool", flush_interval=60.0)
    parent_ids = capture(ls, 4)
    ctx = multiprocessing.get_context("fork")
    recv, send = ctx.Pipe(duplex=False)
    p = ctx.Process(target=_mp_child_inherited, args=(ls, send))
    p.start()
    send.close()
    child_ids = recv.recv()
    recv.close()
    p.join(30)
    assert p.exitcode == 0
    assert collector.wait_for(set(child_ids), timeout=5)
    assert ls.shutdown(2)
    assert sorted(collector.ids()) == sorted(parent_ids + child_ids)
