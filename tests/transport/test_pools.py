"""multiprocessing pools and SIGTERM: records captured in children survive terminate()."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import logos_shift
from tests.transport.collector import Collector

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow]


@pytest.fixture
def collector() -> Iterator[Collector]:
    """A running fake ingest server, every socket closed afterwards."""
    with Collector() as c:
        yield c


POOL = """
import json, multiprocessing as mp, sys
import logos_shift

ls = logos_shift.LogosShift(server_url=sys.argv[1], api_key="k", spool_dir=sys.argv[2],
                            flush_interval=60.0, wait_for_config=0)

@ls()
def work(i):
    return {"i": i}

def task(i):
    return work(i)["logos_shift_id"]

if __name__ == "__main__":
    mp.set_start_method(sys.argv[3])
    with mp.Pool(3) as pool:  # leaving the block calls terminate(): SIGTERM to each worker
        ids = pool.map(task, range(300), chunksize=10)
    print(json.dumps(ids), flush=True)
"""


@contextlib.contextmanager
def socket_port() -> Iterator[int]:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield int(s.getsockname()[1])


def _run(script: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # A file, not ``-c``: spawned children import the main module by its path.
    path = tmp_path / "app.py"
    path.write_text(textwrap.dedent(script))
    return subprocess.run(
        [sys.executable, str(path), *args],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip


def _drain(collector: Collector, spool: Path, ids: set[str]) -> None:
    """A later process replays the spool: every id must reach the server."""
    ls = logos_shift.LogosShift(
        server_url=collector.url, api_key="k", spool_dir=str(spool), flush_interval=0.05,
        wait_for_config=0,
    )  # fmt: skip
    try:
        assert ls.flush(5)  # starts the background thread, which replays the spool
        assert collector.wait_for(ids, timeout=30)
    finally:
        ls.shutdown(2)


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_with_pool_block_loses_nothing_captured_in_workers(
    collector: Collector, tmp_path: Path, method: str
) -> None:
    """`with Pool() as p:` (terminate = SIGTERM) keeps every record the workers captured."""
    spool = tmp_path / "spool"
    proc = _run(POOL, tmp_path, collector.url, str(spool), method)
    assert proc.returncode == 0, proc.stderr
    ids = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(ids) == 300
    _drain(collector, spool, set(ids))
    assert collector.duplicates() == {}


CHILD_WITH_HANDLER = """
import json, multiprocessing as mp, signal, sys, time
import logos_shift

def child(conn):
    if sys.argv[3] == "own handler":
        signal.signal(signal.SIGTERM, lambda s, f: (print("app handler ran", flush=True),
                                                     sys.exit(3)))
    ls = logos_shift.LogosShift(server_url=sys.argv[1], api_key="k", spool_dir=sys.argv[2],
                                flush_interval=60.0, wait_for_config=0)

    @ls()
    def work(i):
        return {"i": i}

    conn.send([work(i)["logos_shift_id"] for i in range(40)])
    time.sleep(60)

if __name__ == "__main__":
    a, b = mp.Pipe()
    p = mp.Process(target=child, args=(b,))
    p.start()
    ids = a.recv()
    p.terminate()
    p.join(30)
    print(json.dumps({"ids": ids, "exitcode": p.exitcode}), flush=True)
"""


@pytest.mark.parametrize("handler", ["own handler", "no handler"])
def test_sigterm_of_a_child_keeps_its_records(
    collector: Collector, tmp_path: Path, handler: str
) -> None:
    """A plain SIGTERM of a child: spilled (no handler) or left to the app's handler and exit."""
    spool = tmp_path / "spool"
    proc = _run(CHILD_WITH_HANDLER, tmp_path, collector.url, str(spool), handler)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    if handler == "own handler":
        assert "app handler ran" in proc.stdout
        assert out["exitcode"] == 3  # the application's handler decided the exit
    else:
        assert out["exitcode"] == -signal.SIGTERM  # died of SIGTERM, as before
    _drain(collector, spool, set(out["ids"]))


def test_sigterm_of_a_main_process_is_left_to_the_application(tmp_path: Path) -> None:
    """Outside multiprocessing children the handler is not installed: SIGTERM kills as before."""
    script = """
    import signal, sys, time
    import logos_shift
    ls = logos_shift.LogosShift(filename=sys.argv[1])
    print(signal.getsignal(signal.SIGTERM) is signal.SIG_DFL, flush=True)
    time.sleep(30)
    """
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script), str(tmp_path / "c.jsonl")],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "True"
    time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == -signal.SIGTERM
    proc.stdout.close()


BIG_EXIT = """
import atexit, json, resource, sys, time
import logos_shift

box = {}

def report():  # registered first, so it runs after the library's exit flush
    st = box["ls"].stats()
    took = time.monotonic() - box["t0"]
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"stats": st, "exit_seconds": took, "rss_kib": rss}), flush=True)

atexit.register(report)
ls = logos_shift.LogosShift(server_url=sys.argv[1], api_key="k", spool_dir=sys.argv[2],
                            flush_interval=60.0, wait_for_config=0, shutdown_timeout=3.0)
box["ls"] = ls

@ls()
def work(i):
    return {"i": i, "text": "y" * 6000}

for i in range(4000):
    work(i)
box["t0"] = time.monotonic()
"""


def test_exit_with_a_big_queue_and_no_server_keeps_its_deadline(
    collector: Collector, tmp_path: Path
) -> None:
    """~24 MB queued, server down: the exit spills in chunks within its deadline, all counted."""
    collector.down()
    proc = _run(BIG_EXIT, tmp_path, collector.url, str(tmp_path / "spool"))
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    stats = out["stats"]
    assert stats["captured"] == 4000
    assert stats["pending"] == 0
    assert stats["captured"] == stats["spooled"] + stats["dropped"] + stats["sent"]
    assert set(stats["dropped_by_reason"]) <= {"shutdown_timeout"}
    assert out["exit_seconds"] < 3.0 + 1.0  # shutdown_timeout, and a margin for a busy machine


UVICORN_APP = """
import os, sys
import logos_shift

ls = logos_shift.LogosShift(server_url=os.environ["COLLECTOR"], api_key="k",
                            spool_dir=os.environ["SPOOL"], flush_interval=60.0,
                            wait_for_config=0)

@ls()
def work(path):
    return {"path": path}

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    rid = work(scope["path"])["logos_shift_id"]
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": rid.encode()})
"""


def test_uvicorn_workers_stopped_by_sigterm_keep_every_record(
    collector: Collector, tmp_path: Path
) -> None:
    """`uvicorn --workers 2` stopped with SIGTERM: every record its workers captured arrives."""
    import requests

    (tmp_path / "asgi_app.py").write_text(textwrap.dedent(UVICORN_APP))
    with socket_port() as port:
        pass
    env = {**os.environ, "COLLECTOR": collector.url, "SPOOL": str(tmp_path / "spool"),
           "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"}  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "asgi_app:app", "--workers", "2", "--port", str(port),
         "--log-level", "warning"],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    ids: list[str] = []
    try:
        deadline = time.monotonic() + 30
        while not ids:
            try:
                ids.append(requests.get(f"http://127.0.0.1:{port}/0", timeout=5).text)
            except requests.ConnectionError:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                assert time.monotonic() < deadline, "uvicorn did not start"
                time.sleep(0.2)
        with requests.Session() as s:
            ids += [s.get(f"http://127.0.0.1:{port}/{i}", timeout=5).text for i in range(1, 60)]
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()
    _drain(collector, tmp_path / "spool", set(ids))
