"""The loop runs by itself: `logos-shift server` promotes and rolls back on traffic and feedback.

Each test runs the server as its users do (`logos-shift server` processes, keys made
with the CLI, `logos-shift finetune start` against the fake provider), then only
sends traffic and feedback from patched openai clients: no evaluate call anywhere.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import openai
import pytest
import requests
import sqlalchemy as sa

import logos_shift
from logos_shift.cli import main
from logos_shift.testing import FakeProvider
from tests.server.support import reset_postgres

# Stages of a few shares so that each needs only a few hundred calls.
POLICY = {"min_per_arm": 10, "min_stage_s": 0, "margin": 0.1, "stages": [0.2, 0.5, 1.0]}
P_CONTROL = 0.8
DEADLINE_S = 120.0


@pytest.fixture
def postgres_db(postgres_url: str) -> str:
    """The session's PostgreSQL database, emptied."""
    reset_postgres(postgres_url)
    return postgres_url


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Server:
    """One `logos-shift server` process."""

    def __init__(self, db_url: str, tmp: Path, fp: FakeProvider, workers: int = 1) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tmp / f"server-{self.port}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOGOS_SHIFT_")}
        env |= {
            "LOGOS_SHIFT_BACKEND_FAKE_URL": fp.openai_base_url,
            "LOGOS_SHIFT_BACKEND_FAKE_KEY": "operator-key",
            # Short timings so the tests are quick; the defaults are 5, 1 and 10 s.
            "LOGOS_SHIFT_ROLLOUT_INTERVAL_S": "1.0",
            "LOGOS_SHIFT_ROLLOUT_DEBOUNCE_S": "0.3",
            "LOGOS_SHIFT_ROLLOUT_LEASE_S": "2.0",
        }
        argv = [sys.executable, "-m", "logos_shift", "server", "--port", str(self.port),
                "--database-url", db_url, "--workers", str(workers)]  # fmt: skip
        with self.log.open("w") as log:
            self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=log, env=env)
        deadline = time.monotonic() + 60
        while True:
            try:
                requests.get(self.url + "/healthz", timeout=2).raise_for_status()
                return
            except requests.RequestException:
                assert self.proc.poll() is None, "server exited early: " + self.log.read_text()
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.1)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the process (SIGTERM: gracefully) and wait for it."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@contextmanager
def servers(
    db_url: str, tmp: Path, fp: FakeProvider, n: int = 1, workers: int = 1
) -> Iterator[list[Server]]:
    """``n`` server processes on one database, stopped at the end."""
    started: list[Server] = []
    try:
        for _ in range(n):
            started.append(Server(db_url, tmp, fp, workers))
        yield started
    finally:
        for s in started:
            s.stop()


def _key(db_url: str, scope: str, capsys: pytest.CaptureFixture[str]) -> str:
    argv = ["keys", "create", "--project", "demo", "--scope", scope, "--database-url", db_url]
    assert main(argv) == 0
    return capsys.readouterr().out.strip()


class App:
    """A user's app: a patched openai client, its users rating the answers."""

    def __init__(self, url: str, ingest_key: str, fp: FakeProvider, tmp: Path) -> None:
        self.ls = logos_shift.init(
            api_key=ingest_key,
            server_url=url,
            refresh_seconds=0.5,
            flush_interval=0.1,
            spool_dir=str(tmp / "spool"),
            state_dir=str(tmp / "state"),
        )
        logos_shift.patch_openai()
        self.client = openai.OpenAI(base_url=fp.openai_base_url, api_key="x", max_retries=0)
        self.rng = random.Random(7)

    def traffic(self, n: int, variant: str | None = None, p_variant: float = 0.0) -> None:
        """``n`` calls of random users, each rated (the variant at ``p_variant``)."""
        for _ in range(n):
            with logos_shift.context(dataset="support", user_id=f"u{self.rng.randrange(10**6)}"):
                resp = self.client.chat.completions.create(
                    model="gpt-4o",
                    messages=[{"role": "user", "content": f"question {self.rng.randrange(10**4)}"}],
                )
            p = p_variant if variant is not None and resp.model == variant else P_CONTROL
            self.ls.provide_feedback(resp.id, "success" if self.rng.random() < p else "failure")
        assert self.ls.flush(30)

    def close(self) -> None:
        """Unpatch and shut the client down."""
        logos_shift.unpatch_all()
        self.client.close()
        self.ls.shutdown(10)


class Admin:
    """What the operator reads: the rollout status and the config clients fetch."""

    def __init__(self, urls: list[str], key: str) -> None:
        self.urls = urls
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {key}"

    def get(self, path: str) -> Any:
        """GET from the first server that answers (another may have been killed)."""
        for url in self.urls:
            try:
                r = self.http.get(url + path, timeout=10)
            except requests.ConnectionError:
                continue
            r.raise_for_status()
            return r.json()
        raise AssertionError("no server answers")

    def status(self) -> dict[str, Any]:
        """The rollout of route ``support``."""
        data: dict[str, Any] = self.get("/v1/routes/support/rollout")
        return data

    def config_version(self) -> int:
        """The version of the config the clients fetch."""
        return int(self.get("/v1/config")["version"])


def _finetune(url: str, admin_key: str, *extra: str) -> None:
    argv = ["finetune", "start", "--dataset", "support", "--base-model", "gpt-4o-mini",
            "--backend", "fake", "--policy", json.dumps(POLICY),
            "--server", url, "--api-key", admin_key, *extra]  # fmt: skip
    assert main(argv) == 0


def _until(admin: Admin, statuses: tuple[str, ...], app: App | None = None, p: float = 0.0,
           on_step: Any = None) -> dict[str, Any]:  # fmt: skip
    """Send traffic (when ``app``) until the rollout reaches one of ``statuses``."""
    deadline = time.monotonic() + DEADLINE_S
    seen_version = -1
    while True:
        st = admin.status()
        if st["state"]["version"] != seen_version:
            seen_version = st["state"]["version"]
            if on_step is not None:
                on_step(st)
        if st["state"]["status"] in statuses:
            return st
        assert time.monotonic() < deadline, f"stuck in {st['state']}"
        if app is None or st["state"]["status"] not in ("canary",):
            time.sleep(0.1)
            continue
        app.traffic(60, st["state"]["variant_model"], p)


def _follows(admin: Admin, app: App) -> Any:
    """Check that after a transition a client has the new config at its next refresh."""

    def check(_status: dict[str, Any]) -> None:
        before = admin.config_version()
        app.ls.router.refresh_now()  # what the client's next config poll does
        config = app.ls.router.config
        assert config is not None
        after = admin.config_version()
        assert before <= config.version <= after

    return check


def _transitions(status: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [
        (e["action"], e.get("from"), e.get("to"), e.get("stage"))
        for e in status["events"]
        if e["action"] not in ("job_status",)
    ]


def _assert_each_once(status: dict[str, Any]) -> None:
    """No transition of any one rollout (events since its training_started) appears twice."""
    rollouts: list[list[tuple[Any, ...]]] = []
    for step in _transitions(status):
        if step[0] == "training_started":
            rollouts.append([])
        rollouts[-1].append(step)
    assert rollouts
    for steps in rollouts:
        assert len(steps) == len(set(steps)), steps


def _full_loop(urls: list[str], db_url: str, fp: FakeProvider, tmp: Path,
               capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:  # fmt: skip
    """Capture, fine-tune, promote a good model, then roll back a worse one."""
    admin_key, ingest_key = _key(db_url, "admin", capsys), _key(db_url, "ingest", capsys)
    app = App(urls[-1], ingest_key, fp, tmp)
    admin = Admin(urls, admin_key)
    try:
        app.traffic(40)
        fp.finetune_schedule(seconds_per_phase=0.2)
        _finetune(urls[0], admin_key)
        follows = _follows(admin, app)
        first = _until(admin, ("promoted", "rolled_back", "failed"), app, 0.97, follows)
        assert first["state"]["status"] == "promoted", first["state"]
        promoted = first["state"]["variant_model"]
        cfg = admin.get("/v1/config")["routes"]["support"]
        assert cfg["rollout"]["variant_pct"] == 1.0
        _finetune(urls[0], admin_key)
        second = _until(admin, ("promoted", "rolled_back", "failed"), app, 0.3, follows)
        assert second["state"]["status"] == "rolled_back", second["state"]
        assert second["state"]["control_model"] == promoted
        cfg = admin.get("/v1/config")["routes"]["support"]
        assert cfg["control"]["model"] == promoted
        assert cfg["rollout"]["variant_pct"] == 0
        _assert_each_once(second)
        return second
    finally:
        app.close()
        admin.http.close()


@pytest.mark.slow
def test_sqlite_server_promotes_then_rolls_back_with_no_manual_step(
    tmp_path: Path, fake_provider: FakeProvider, capsys: pytest.CaptureFixture[str]
) -> None:
    """One `logos-shift server` on SQLite: traffic and feedback alone promote, then roll back."""
    db_url = f"sqlite:///{tmp_path / 'logos.db'}"
    with servers(db_url, tmp_path, fake_provider) as procs:
        _full_loop([p.url for p in procs], db_url, fake_provider, tmp_path, capsys)


@pytest.mark.slow
def test_two_workers_run_one_loop(
    tmp_path: Path, fake_provider: FakeProvider, capsys: pytest.CaptureFixture[str]
) -> None:
    """With `--workers 2` one worker leads; ingest in either moves the rollout, each step once."""
    db_url = f"sqlite:///{tmp_path / 'logos.db'}"
    with servers(db_url, tmp_path, fake_provider, workers=2) as procs:
        _full_loop([p.url for p in procs], db_url, fake_provider, tmp_path, capsys)


@pytest.mark.slow
@pytest.mark.postgres
def test_two_servers_on_one_postgres(
    postgres_db: str, tmp_path: Path, fake_provider: FakeProvider,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """Two server processes on one PostgreSQL: the app talks only to the one that follows."""
    with servers(postgres_db, tmp_path, fake_provider, n=2) as procs:
        leader, follower = _by_role(procs, postgres_db)
        _full_loop([leader.url, follower.url], postgres_db, fake_provider, tmp_path, capsys)
        # Its ingest reached the leader through the marks it left in the database.
        assert "this process leads" not in follower.log.read_text()


def _leader_pid(db_url: str) -> int | None:
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            holder, expires = conn.execute(
                sa.text("SELECT holder, expires_at FROM leases WHERE name = 'rollout'")
            ).one()
    finally:
        engine.dispose()
    return int(holder.split(":")[1]) if holder and expires > time.time() else None


def _by_role(procs: list[Server], db_url: str) -> tuple[Server, Server]:
    """The leading server process and the other one."""
    deadline = time.monotonic() + 30
    while (pid := _leader_pid(db_url)) is None:
        assert time.monotonic() < deadline, "no server leads"
        time.sleep(0.1)
    leader = next(p for p in procs if p.proc.pid == pid)
    return leader, next(p for p in procs if p is not leader)


@pytest.mark.slow
def test_two_sqlite_servers_follower_ingest_reaches_the_leader(
    tmp_path: Path, fake_provider: FakeProvider, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two server processes on one SQLite file: the app talks only to the one that follows."""
    db_url = f"sqlite:///{tmp_path / 'logos.db'}"
    with servers(db_url, tmp_path, fake_provider, n=2) as procs:
        leader, follower = _by_role(procs, db_url)
        _full_loop([leader.url, follower.url], db_url, fake_provider, tmp_path, capsys)
        assert "this process leads" not in follower.log.read_text()


@pytest.mark.slow
def test_sigkill_of_the_leader_hands_the_loop_over(
    tmp_path: Path, fake_provider: FakeProvider, capsys: pytest.CaptureFixture[str]
) -> None:
    """SIGKILL of the leading server mid-rollout: the other takes over; each step logged once."""
    db_url = f"sqlite:///{tmp_path / 'logos.db'}"
    admin_key, ingest_key = _key(db_url, "admin", capsys), _key(db_url, "ingest", capsys)
    with servers(db_url, tmp_path, fake_provider, n=2) as procs:
        admin = Admin([p.url for p in procs], admin_key)
        app = App(procs[0].url, ingest_key, fake_provider, tmp_path)
        try:
            app.traffic(40)
            fake_provider.finetune_schedule(seconds_per_phase=0.2)
            _finetune(procs[0].url, admin_key)
            _until(admin, ("canary",))
            leader, other = _by_role(procs, db_url)
            leader.stop(signal.SIGKILL)
            # The app now talks to the survivor (a load balancer would do this).
            app.ls.shutdown(10)
            logos_shift.unpatch_all()
            app = App(other.url, ingest_key, fake_provider, tmp_path / "after")
            admin.urls = [other.url]
            end = _until(admin, ("promoted", "rolled_back", "failed"), app, 0.97)
            assert end["state"]["status"] == "promoted"
            assert _leader_pid(db_url) == other.proc.pid
            _assert_each_once(end)
        finally:
            app.close()
            admin.http.close()


@pytest.mark.slow
def test_a_restart_during_training_resumes_the_watch(
    tmp_path: Path, fake_provider: FakeProvider, capsys: pytest.CaptureFixture[str]
) -> None:
    """The server stops while the job trains; started again, it finds the job and rolls out."""
    db_url = f"sqlite:///{tmp_path / 'logos.db'}"
    admin_key, ingest_key = _key(db_url, "admin", capsys), _key(db_url, "ingest", capsys)
    with servers(db_url, tmp_path, fake_provider) as procs:
        app = App(procs[0].url, ingest_key, fake_provider, tmp_path)
        try:
            app.traffic(40)
        finally:
            app.close()
        # Twelve job reads to the end: the first server is stopped long before.
        fake_provider.finetune_schedule(retrieves_per_phase=3)
        _finetune(procs[0].url, admin_key, "--no-wait")
        procs[0].stop()
        first_log = procs[0].log.read_text()
    time.sleep(0.5)  # the job goes on at the provider while no server runs
    with servers(db_url, tmp_path, fake_provider) as procs:
        admin = Admin([procs[0].url], admin_key)
        try:
            assert admin.status()["state"]["status"] == "training"
            end = _until(admin, ("canary", "failed"))
            assert end["state"]["status"] == "canary"
            assert end["state"]["variant_model"].startswith("ft:gpt-4o-mini:fake:")
            _assert_each_once(end)
            # The second server moved it on: it found the job in the database.
            assert "training -> canary" not in first_log
            assert "training -> canary" in procs[0].log.read_text()
        finally:
            admin.http.close()
