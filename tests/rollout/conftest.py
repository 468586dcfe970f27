"""Fixtures of the rollout tests: a real Logos server with the rollout endpoints installed."""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from logos_shift import _ids
from logos_shift._capture import record as _records
from logos_shift.server import create_app, create_key
from logos_shift.server._rollout_api import install
from logos_shift.server._rollout_service import RolloutService
from logos_shift.server._serve import serve_in_thread


@dataclass
class Server:
    """A running server, its keys and its rollout service."""

    url: str
    admin: str
    ingest_key: str
    service: RolloutService
    http: requests.Session

    def post(self, path: str, body: Any = None, key: str | None = None) -> requests.Response:
        """POST JSON with the admin key (or ``key``)."""
        return self.http.post(
            self.url + path, json=body, headers={"Authorization": f"Bearer {key or self.admin}"}
        )

    def get(self, path: str, key: str | None = None) -> requests.Response:
        """GET with the admin key (or ``key``)."""
        return self.http.get(
            self.url + path, headers={"Authorization": f"Bearer {key or self.admin}"}
        )

    def ingest(self, records: list[dict[str, Any]]) -> None:
        """Ingest records and check every one was accepted."""
        for i in range(0, len(records), 2000):
            r = self.post("/v1/ingest", records[i : i + 2000], key=self.ingest_key)
            assert r.status_code == 200, r.text
            assert r.json()["errors"] == 0, r.text


def call(question: str, answer: str, **fields: Any) -> dict[str, Any]:
    """Build a chat call record (the wire schema)."""
    rec: dict[str, Any] = {
        "schema": 1,
        "type": "call",
        "id": _ids.new_id(),
        "ts": _records.format_ts(time.time()),
        "dataset": "support",
        "source": "openai.chat.completions",
        "provider": "openai",
        "requested_model": "gpt-4o",
        "served_model": "gpt-4o",
        "input": {"model": "gpt-4o", "messages": [{"role": "user", "content": question}]},
        "output": {"choices": [{"message": {"role": "assistant", "content": answer}}]},
        "latency_ms": 100.0,
        "usage": {"input_tokens": 10, "output_tokens": 20},
    }
    rec.update(fields)
    return rec


def feedback(target: str, outcome: str) -> dict[str, Any]:
    """Build a feedback record."""
    return {
        "schema": 1,
        "type": "feedback",
        "id": _ids.new_id(),
        "ts": _records.format_ts(time.time()),
        "target": target,
        "outcome": outcome,
    }


def seed_dataset(server: Server, n: int = 40) -> None:
    """Ingest ``n`` chat calls of dataset ``support``, each with success feedback."""
    calls = [call(f"question {i}", f"Echo: question {i}") for i in range(n)]
    server.ingest(calls + [feedback(c["id"], "success") for c in calls])


def start_finetune(server: Server, fp: Any, policy: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """Start a fine-tune of ``support`` on the fake backend; wait until the service is idle.

    Returns:
        The ``POST /v1/finetune`` answer (asserted to be 202).
    """
    fp.finetune_schedule(seconds_per_phase=0)
    body = {
        "dataset": "support",
        "base_model": "gpt-4o-mini",
        "backend_url": fp.openai_base_url,
        "backend_api_key": "k",
        "policy": policy,
        **extra,
    }
    r = server.post("/v1/finetune", body)
    assert r.status_code == 202, r.text
    assert server.service.wait_idle(30)
    return dict(r.json())


# Read at import: the suite's autouse fixture strips LOGOS_SHIFT_* variables.
POSTGRES_URL = os.environ.get("LOGOS_SHIFT_TEST_POSTGRES_URL")


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param(
            "postgres",
            marks=[
                pytest.mark.postgres,
                pytest.mark.skipif(not POSTGRES_URL, reason="needs LOGOS_SHIFT_TEST_POSTGRES_URL"),
            ],
        ),
    ]
)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database: a temp SQLite file, or a new PostgreSQL database dropped afterwards."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'logos.db'}"
        return
    import sqlalchemy as sa

    name = f"rollout_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(str(POSTGRES_URL), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin.url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def server(db_url: str) -> Iterator[Server]:
    """A Logos server (SQLite, and PostgreSQL when configured) with the rollout endpoints."""
    app = create_app(db_url)
    service = install(
        app, RolloutService(app.state.db, poll_s=(0.01, 0.05), webhook_backoff_s=0.01)
    )
    admin, _ = create_key(app.state.db, "acme", "admin")
    ingest_key, _ = create_key(app.state.db, "acme", "ingest")
    with serve_in_thread(app) as running, requests.Session() as http:
        yield Server(running.url, admin, ingest_key, service, http)
        service.close()


class _Hook(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        srv: Any = self.server
        srv.attempts += 1
        fail = srv.attempts <= srv.fail_first
        if not fail:
            srv.events.append(body)
        self.send_response(500 if fail else 200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture
def webhook() -> Iterator[Any]:
    """A local webhook receiver that fails its first request (to exercise retries)."""
    srv: Any = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    srv.events, srv.attempts, srv.fail_first = [], 0, 1
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}/hook"
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    t.join()
