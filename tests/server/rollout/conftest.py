"""Fixtures of the rollout tests: a real Logos server with the rollout endpoints installed."""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from logos_shift.server import (
    AddressPolicy,
    Backend,
    RolloutService,
    ServerSettings,
    create_app,
    create_key,
    serve_in_thread,
)
from logos_shift.server.api.rollout import install
from logos_shift.testing import FakeProvider
from tests.server.rollout.support import Server

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
def loop_timings() -> dict[str, str]:
    """The rollout loop's timings: so slow here that only the tests' own evaluate calls decide.

    The loop still polls fine-tuning jobs; override this fixture (a parametrize of the
    same name) to let it evaluate by itself.
    """
    return {"INTERVAL_S": "3600", "DEBOUNCE_S": "3600", "LEASE_S": "10"}


@pytest.fixture
def server(
    db_url: str,
    fake_provider: FakeProvider,
    loop_timings: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Server]:
    """A Logos server (SQLite, and PostgreSQL when configured) with the rollout endpoints.

    Its operator configured the fake provider as the backend ``fake`` (the default one),
    and lets project backend URLs reach loopback (the tests' own listeners).
    """
    for name, value in loop_timings.items():
        monkeypatch.setenv(f"LOGOS_SHIFT_ROLLOUT_{name}", value)
    settings = ServerSettings(
        backends={"fake": Backend("fake", fake_provider.openai_base_url, "k")},
        outbound=AddressPolicy(allow_networks=("127.0.0.0/8",)),
    )
    app = create_app(db_url, settings=settings)
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
