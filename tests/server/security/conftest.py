"""Fixtures of the security tests: a real server (uvicorn on 127.0.0.1) with every endpoint,
and local listeners standing in for internal services, backends and webhook receivers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from logos_shift.server import RolloutService, create_app, create_key, serve_in_thread
from logos_shift.server.api.rollout import install
from tests.server.rollout.support import Server
from tests.server.security.support import Listener
from tests.server.support import db_url, postgres_url

__all__ = ["db_url", "postgres_url"]


@dataclass
class Running:
    """A running server: the rollout helpers' ``Server`` plus a second project's admin key."""

    api: Server
    other_admin: str
    app: Any

    def __getattr__(self, name: str) -> Any:
        return getattr(self.api, name)


@pytest.fixture
def listen() -> Iterator[Callable[..., Listener]]:
    """Factory of listeners on 127.0.0.x; all are stopped after the test."""
    made: list[Listener] = []

    def make(**kwargs: Any) -> Listener:
        listener = Listener(**kwargs)
        made.append(listener)
        return listener

    yield make
    for listener in made:
        listener.close()


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Callable[..., Running]]:
    """Factory: ``launch(settings=None, url=None)`` serves a new app with the rollout API."""
    stack: list[tuple[Any, Any, RolloutService, requests.Session]] = []

    def make(settings: Any = None, url: str | None = None, **app_kwargs: Any) -> Running:
        db = url or f"sqlite:///{tmp_path / f'logos{len(stack)}.db'}"
        if settings is not None:
            app_kwargs["settings"] = settings
        app = create_app(db, extensions=False, **app_kwargs)
        service = install(
            app, RolloutService(app.state.db, poll_s=(0.01, 0.05), webhook_backoff_s=0.01)
        )
        admin, _ = create_key(app.state.db, "acme", "admin")
        ingest_key, _ = create_key(app.state.db, "acme", "ingest")
        other, _ = create_key(app.state.db, "other", "admin")
        ctx = serve_in_thread(app)
        running = ctx.__enter__()
        http = requests.Session()
        stack.append((ctx, app, service, http))
        return Running(Server(running.url, admin, ingest_key, service, http), other, app)

    yield make
    for ctx, app, service, http in reversed(stack):
        service.close()
        http.close()
        ctx.__exit__(None, None, None)
        app.state.db.dispose()
