"""Shared helpers of the server tests: databases (SQLite and PostgreSQL), an HTTP API
session, record factories.

PostgreSQL runs when ``LOGOS_SHIFT_TEST_POSTGRES_URL`` is set (for example
``postgresql+psycopg://postgres:postgres@127.0.0.1:5432/postgres``): a fresh
database is created for the session and its schema is reset before each test.
The fixtures here are imported by ``tests/server/conftest.py`` and
``tests/e2e/conftest.py``.
"""

from __future__ import annotations

import gzip
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa

from logos_shift import _ids
from logos_shift.server import Database

# Read at import: the suite's autouse fixture strips LOGOS_SHIFT_* variables.
POSTGRES_URL = os.environ.get("LOGOS_SHIFT_TEST_POSTGRES_URL")
_NO_PG = "PostgreSQL tests need LOGOS_SHIFT_TEST_POSTGRES_URL (see .ci/run)"

BACKENDS = [
    "sqlite",
    pytest.param(
        "postgres",
        marks=[pytest.mark.postgres, pytest.mark.skipif(not POSTGRES_URL, reason=_NO_PG)],
    ),
]


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session (dropped at the end)."""
    if not POSTGRES_URL:
        pytest.skip(_NO_PG)
    name = f"logos_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = admin.url.set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def reset_postgres(url: str) -> None:
    """Drop every table of the test database (an empty database, like a new SQLite file)."""
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text("DROP SCHEMA public CASCADE"))
        conn.execute(sa.text("CREATE SCHEMA public"))
    engine.dispose()


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """URL of an empty database: a temp SQLite file, or the session's PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'logos.db'}"
    url: str = request.getfixturevalue("postgres_url")
    reset_postgres(url)
    return url


class Api:
    """A requests session bound to the server's URL and one key."""

    def __init__(self, base: str, key: str | None) -> None:
        self.base = base
        self.session = requests.Session()
        if key is not None:
            self.session.headers["Authorization"] = f"Bearer {key}"

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """Send a request to ``path`` (relative to the server URL)."""
        kwargs.setdefault("timeout", 30)
        return self.session.request(method, self.base + path, **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        """GET ``path``."""
        return self.request("GET", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> requests.Response:
        """PUT ``path``."""
        return self.request("PUT", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> requests.Response:
        """DELETE ``path``."""
        return self.request("DELETE", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        """POST ``path``."""
        return self.request("POST", path, **kwargs)

    def ingest(self, records: list[Any], gz: bool = True, **headers: str) -> requests.Response:
        """POST records to /v1/ingest as the client does (gzip'd JSON array)."""
        body = json.dumps(records).encode()
        hdrs = {"Content-Type": "application/json", **headers}
        if gz:
            body = gzip.compress(body)
            hdrs["Content-Encoding"] = "gzip"
        return self.post("/v1/ingest", data=body, headers=hdrs)


def make_call(**fields: Any) -> dict[str, Any]:
    """A valid chat-completions call record; keyword arguments override fields."""
    n = fields.pop("n", 0)
    rec: dict[str, Any] = {
        "schema": 1,
        "type": "call",
        "id": _ids.new_id(),
        "ts": f"2026-11-23T21:00:{n % 60:02d}.{n % 1000:03d}Z",
        "dataset": "support",
        "source": "openai.chat.completions",
        "function": None,
        "input": {"model": "gpt-4o", "messages": [{"role": "user", "content": f"question {n}"}]},
        "output": {
            "id": f"chatcmpl-{n}",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": f"answer {n}"}}],
        },
        "error": None,
        "provider": "openai",
        "requested_model": "gpt-4o",
        "served_model": "gpt-4o",
        "route": None,
        "variant": None,
        "fallback": False,
        "response_id": f"chatcmpl-{uuid.uuid4().hex}",
        "usage": {"input_tokens": 10, "output_tokens": 20},
        "latency_ms": 100.0 + n,
        "ttft_ms": None,
        "stream": None,
        "metadata": {"user_id": f"u{n}"},
        "sdk": {"name": "openai", "version": "3.54.0"},
    }
    rec.update(fields)
    return rec


def make_feedback(target: str, outcome: str = "success", **fields: Any) -> dict[str, Any]:
    """A valid feedback record for ``target``; keyword arguments override fields."""
    rec: dict[str, Any] = {
        "schema": 1,
        "type": "feedback",
        "id": _ids.new_id(),
        "ts": "2026-11-23T22:00:00.000Z",
        "target": target,
        "outcome": outcome,
        "score": 1.0 if outcome == "success" else 0.0,
        "comment": None,
        "metadata": {},
    }
    rec.update(fields)
    return rec


def count_rows(db: Database, table: str) -> int:
    """Number of rows in ``table``."""
    with db.read() as conn:
        return int(conn.execute(sa.text(f"SELECT COUNT(*) FROM {table}")).scalar_one())
