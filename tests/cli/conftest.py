"""Fixtures of the CLI tests: a real server (SQLite file, uvicorn on a free port) and keys."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytest.importorskip("fastapi")

from logos_shift.server import Database, create_app, create_key, serve_in_thread


@dataclass
class Live:
    """A running server and keys of its project ``shop``."""

    url: str
    admin: str
    ingest: str

    def args(self) -> list[str]:
        """``--server URL --api-key ADMIN`` for a command."""
        return ["--server", self.url, "--api-key", self.admin]


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    """The Logos server on a temporary SQLite file, served in a thread."""
    db = Database(f"sqlite:///{tmp_path / 'logos.db'}")
    app = create_app(db)
    admin = create_key(db, "shop", "admin")[0]
    ingest = create_key(db, "shop", "ingest")[0]
    with serve_in_thread(app) as server:
        yield Live(server.url, admin, ingest)
    db.dispose()
