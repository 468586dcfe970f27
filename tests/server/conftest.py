"""Fixtures of the server tests: a database (SQLite and PostgreSQL), the app served by
uvicorn on a real port, API keys and record factories (helpers in ``support``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from logos_shift.server import (
    Database,
    RateLimits,
    RunningServer,
    ServerSettings,
    create_app,
    create_key,
    serve_in_thread,
)
from logos_shift.server.store.keys import list_keys, revoke_key
from tests.server.support import Api, count_rows, db_url, make_call, make_feedback, postgres_url

__all__ = ["db_url", "postgres_url"]  # fixtures defined in support, registered here


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    """A Database on the empty test database (disposed after the test)."""
    database = Database(db_url)
    yield database
    database.dispose()


@dataclass
class Keys:
    """API keys of two projects."""

    admin: str
    ingest: str
    other_admin: str


#: The API tests send bursts of requests (and of wrong keys) from 127.0.0.1: rate limits
#: are off here and tested on their own in tests/server/security/test_rate_limits.py.
NO_RATE_LIMITS = ServerSettings(
    rate_limits=RateLimits(ingest_per_s=0, admin_per_s=0, bad_keys_per_address=0)
)


@pytest.fixture
def app(db: Database) -> Any:
    """The FastAPI app on the test database (migrated), without the rollout extension."""
    return create_app(db, extensions=False, settings=NO_RATE_LIMITS)


@pytest.fixture
def full_server(db: Database) -> Iterator[tuple[RunningServer, dict[str, str]]]:
    """The app with every endpoint (fine-tune and rollout included), rate limits off, served;
    and keys of every kind of caller: ``admin``, ``ingest``, ``other`` (another project's
    admin) and ``revoked``."""
    app = create_app(db, settings=NO_RATE_LIMITS)
    keys = {
        "admin": create_key(db, "acme", "admin")[0],
        "ingest": create_key(db, "acme", "ingest")[0],
        "other": create_key(db, "other", "admin")[0],
        "revoked": create_key(db, "acme", "admin")[0],
    }
    revoked = [k for k in list_keys(db, "acme") if k.scope == "admin"][-1]
    assert revoke_key(db, revoked.id)
    with serve_in_thread(app) as running:
        yield running, keys


@pytest.fixture
def keys(app: Any, db: Database) -> Keys:
    """Admin and ingest keys of project 'acme' and an admin key of project 'other'."""
    return Keys(
        admin=create_key(db, "acme", "admin")[0],
        ingest=create_key(db, "acme", "ingest")[0],
        other_admin=create_key(db, "other", "admin")[0],
    )


@pytest.fixture
def server(app: Any) -> Iterator[RunningServer]:
    """The app served by uvicorn on 127.0.0.1, a free port, in a thread."""
    with serve_in_thread(app) as running:
        yield running


@pytest.fixture
def api_for(server: RunningServer) -> Iterator[Callable[[str | None], Api]]:
    """Factory of API sessions for a key (None = no Authorization header)."""
    made: list[Api] = []

    def make(key: str | None) -> Api:
        api = Api(server.url, key)
        made.append(api)
        return api

    yield make
    for api in made:
        api.session.close()


@pytest.fixture
def admin(api_for: Callable[[str | None], Api], keys: Keys) -> Api:
    """An API session with project acme's admin key."""
    return api_for(keys.admin)


@pytest.fixture
def ingest_api(api_for: Callable[[str | None], Api], keys: Keys) -> Api:
    """An API session with project acme's ingest key."""
    return api_for(keys.ingest)


@pytest.fixture
def other(api_for: Callable[[str | None], Api], keys: Keys) -> Api:
    """An API session with project other's admin key."""
    return api_for(keys.other_admin)


@pytest.fixture
def call_factory() -> Callable[..., dict[str, Any]]:
    """The :func:`make_call` record factory."""
    return make_call


@pytest.fixture
def feedback_factory() -> Callable[..., dict[str, Any]]:
    """The :func:`make_feedback` record factory."""
    return make_feedback


@pytest.fixture
def rows() -> Callable[[Database, str], int]:
    """The :func:`count_rows` helper."""
    return count_rows
