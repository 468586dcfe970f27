"""Faults against the real `logos-shift server`: records counted by id in its database.

Each test runs the server as a subprocess (SQLite, or PostgreSQL where the
row asks for it), a patched-in client in this process capturing from four
threads at a modest rate, and a fault: the server SIGSTOPped, answering
slowly through :class:`~tests.e2e.faultproxy.FaultProxy`, a wrong key, a
``/v1`` suffix.  After each fault every record must be in the database
(nothing the disk could hold is lost), every drop counted, and
``captured == sent + spooled + dropped + pending``.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa

import logos_shift
from logos_shift.server import Database
from logos_shift.server.store.keys import create_key
from logos_shift.server.store.migrations import migrate
from tests.e2e.faultproxy import FaultProxy

pytestmark = [pytest.mark.slow]


class Server:
    """A running `logos-shift server` on a database, with an ingest key."""

    def __init__(self, tmp: Path, database_url: str) -> None:
        self.database_url = database_url
        db = Database(database_url)
        try:
            migrate(db)
            self.key = create_key(db, "acme", "ingest")[0]
        finally:
            db.dispose()
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self._log = (tmp / f"server-{self.port}.log").open("wb")
        argv = [sys.executable, "-m", "logos_shift", "server", "--port", str(self.port),
                "--database-url", database_url, "--log-level", "warning"]  # fmt: skip
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=self._log)
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(f"{self.url}/healthz", timeout=2)
                return
            except requests.ConnectionError:
                assert self.proc.poll() is None, "server exited early"
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.1)

    @property
    def url(self) -> str:
        """The server's base URL."""
        return f"http://127.0.0.1:{self.port}"

    def stored_ids(self) -> set[str]:
        """Ids of every call and feedback record in the database."""
        engine = sa.create_engine(self.database_url)
        try:
            with engine.connect() as conn:
                calls = {str(r[0]) for r in conn.execute(sa.text("SELECT id FROM calls"))}
                fb = {str(r[0]) for r in conn.execute(sa.text("SELECT id FROM feedback"))}
        finally:
            engine.dispose()
        return calls | fb

    def wait_for(self, ids: set[str], timeout: float = 60.0) -> set[str]:
        """Wait until every id is stored; return the ones still missing."""
        end = time.monotonic() + timeout
        missing = ids - self.stored_ids()
        while missing and time.monotonic() < end:
            time.sleep(0.25)
            missing = ids - self.stored_ids()
        return missing

    def stop(self) -> None:
        """Stop the server (continuing it first if it was stopped)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    """A real server on a fresh SQLite database, stopped afterwards."""
    srv = Server(tmp_path, f"sqlite:///{tmp_path / 'faults.db'}")
    try:
        yield srv
    finally:
        srv.stop()


class Load:
    """Four threads capturing at ``rate`` calls/s in all, recording ids and exceptions."""

    def __init__(self, ls: logos_shift.LogosShift, rate: int) -> None:
        self.ids: list[str] = []
        self.errors: list[BaseException] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._rate = rate

        @ls(dataset="faults")
        def call(i: int) -> dict[str, Any]:
            return {"i": i, "text": "x" * 200}

        self._call = call
        self._threads = [threading.Thread(target=self._run) for _ in range(4)]
        for t in self._threads:
            t.start()

    def _run(self) -> None:
        per_tick = max(1, self._rate // 4 // 20)  # 20 ticks a second per thread
        i = 0
        while not self._stop.is_set():
            try:
                got = [str(self._call(i + k)["logos_shift_id"]) for k in range(per_tick)]
            except BaseException as exc:  # a caller must never see one
                with self._lock:
                    self.errors.append(exc)
                return
            i += per_tick
            with self._lock:
                self.ids.extend(got)
            time.sleep(0.05)

    def stop(self) -> list[str]:
        """Stop the threads; return every id produced."""
        self._stop.set()
        for t in self._threads:
            t.join(30)
        return self.ids


def _client(url: str, key: str, spool: Path, **kw: Any) -> logos_shift.LogosShift:
    # The README's defaults, except no routing config wait.
    return logos_shift.LogosShift(
        server_url=url, api_key=key, spool_dir=str(spool), wait_for_config=0, **kw
    )


def _accounted(stats: dict[str, Any]) -> None:
    total = stats["sent"] + stats["spooled"] + stats["dropped"] + stats["pending"]
    assert stats["captured"] == total, stats


def test_server_sigstopped_loses_nothing(server: Server, tmp_path: Path) -> None:
    """A server stopped (SIGSTOP) for 5 s at 400 calls/s: every record arrives, none dropped."""
    ls = _client(server.url, server.key, tmp_path / "spool")
    load = Load(ls, 400)
    time.sleep(1.0)
    server.proc.send_signal(signal.SIGSTOP)
    time.sleep(5.0)
    during = ls.stats()
    server.proc.send_signal(signal.SIGCONT)
    time.sleep(1.0)
    ids = load.stop()
    assert load.errors == []
    assert during["dropped"] == 0
    _accounted(during)
    assert server.wait_for(set(ids)) == set()
    assert ls.shutdown(10)
    stats = ls.stats()
    assert stats["dropped"] == 0
    _accounted(stats)


def test_slow_server_loses_nothing_and_says_so(server: Server, tmp_path: Path) -> None:
    """Every answer 5 s late for 8 s at 400 calls/s: batches spill (slow counted), all arrive."""
    proxy = FaultProxy(server.port)
    try:
        ls = _client(proxy.url, server.key, tmp_path / "spool")
        load = Load(ls, 400)
        time.sleep(1.0)
        proxy.delay(5.0)
        time.sleep(8.0)
        during = ls.stats()
        proxy.passthrough()
        ids = load.stop()
        assert load.errors == []
        assert during["slow"] >= 1
        assert during["last_error"] is not None
        assert during["dropped"] == 0
        assert server.wait_for(set(ids)) == set()
        assert ls.shutdown(10)
        _accounted(ls.stats())
    finally:
        proxy.stop()


def test_hung_server_then_back_loses_nothing(server: Server, tmp_path: Path) -> None:
    """No answers at all for 5 s (a wedged server) at 400 calls/s: every record arrives later."""
    proxy = FaultProxy(server.port)
    try:
        ls = _client(proxy.url, server.key, tmp_path / "spool")
        load = Load(ls, 400)
        time.sleep(1.0)
        proxy.hang()
        time.sleep(5.0)
        during = ls.stats()
        proxy.passthrough()
        ids = load.stop()
        assert load.errors == []
        assert during["dropped"] == 0
        assert server.wait_for(set(ids)) == set()
        assert ls.shutdown(10)
        _accounted(ls.stats())
    finally:
        proxy.stop()


@pytest.mark.parametrize("mistake", ["wrong key", "/v1 suffix"])
def test_misconfigured_client_keeps_everything_for_the_fixed_one(
    server: Server, tmp_path: Path, mistake: str
) -> None:
    """A wrong key (401) or a /v1 suffix (404) stores nothing, loses nothing; the fix replays it."""
    spool = tmp_path / "spool"
    if mistake == "wrong key":
        wrong = _client(server.url, "lsk_not-a-key", spool)
    else:
        wrong = _client(server.url + "/v1", server.key, spool)
    load = Load(wrong, 200)
    time.sleep(2.0)
    ids = load.stop()
    assert load.errors == []
    assert wrong.shutdown(5)
    stats = wrong.stats()
    assert stats["dropped"] == 0
    assert stats["spooled"] == len(ids)
    assert "fix:" in (stats["last_error"] or "")
    _accounted(stats)
    assert server.stored_ids() == set()
    fixed = _client(server.url, server.key, spool)
    assert fixed.flush(5)  # starts its background thread: it adopts and replays the spool
    assert server.wait_for(set(ids)) == set()
    assert fixed.shutdown(5)


@pytest.mark.postgres
def test_two_servers_on_one_postgres_never_deadlock(tmp_path: Path, postgres_url: str) -> None:
    """Overlapping batches in opposite orders, sent at once to two servers: no 500, all stored."""
    from tests.server.support import make_call, reset_postgres

    reset_postgres(postgres_url)
    a = Server(tmp_path, postgres_url)
    b = Server(tmp_path, postgres_url)
    try:
        import gzip
        import json

        statuses: list[int] = []
        lock = threading.Lock()
        all_ids: set[str] = set()

        def send(target: Server, records: list[dict[str, Any]]) -> None:
            body = gzip.compress(json.dumps(records).encode())
            r = requests.post(
                f"{target.url}/v1/ingest", data=body, timeout=60,
                headers={"Authorization": f"Bearer {a.key}", "Content-Encoding": "gzip",
                         "Content-Type": "application/json"},
            )  # fmt: skip
            with lock:
                statuses.append(r.status_code)

        threads = []
        for _ in range(15):
            batch = [make_call() for _ in range(100)]
            all_ids.update(str(r["id"]) for r in batch)
            threads.append(threading.Thread(target=send, args=(a, batch)))
            threads.append(threading.Thread(target=send, args=(b, batch[::-1])))
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert sorted(set(statuses)) == [200]
        assert a.wait_for(all_ids, timeout=10) == set()
    finally:
        a.stop()
        b.stop()
