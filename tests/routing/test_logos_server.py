"""The router against the real Logos server: routes PUT by an admin reach the client."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

pytest.importorskip("fastapi")

from logos_shift.routing.router import Router
from logos_shift.server import Database, create_app, create_key
from logos_shift.server._serve import serve_in_thread

ROUTE: dict[str, Any] = {
    "match": {"dataset": "support", "model": "gpt-4o"},
    "control": {"name": "base", "model": "gpt-4o"},
    "variants": [{"name": "ft-1", "model": "ft:gpt-4o-mini:acme::x1"}],
    "rollout": {"variant_pct": 1.0},
}


@pytest.fixture
def logos(tmp_path: Path) -> Iterator[tuple[str, str, requests.Session]]:
    """A Logos server on SQLite: (url, ingest key, admin session)."""
    db = Database(f"sqlite:///{tmp_path / 'logos.db'}")
    app = create_app(db)
    admin_key = create_key(db, "acme", "admin")[0]
    ingest_key = create_key(db, "acme", "ingest")[0]
    admin = requests.Session()
    admin.headers["Authorization"] = f"Bearer {admin_key}"
    try:
        with serve_in_thread(app) as running:
            yield running.url, ingest_key, admin
    finally:
        admin.close()
        db.dispose()


def test_routes_put_on_the_server_reach_the_router(
    logos: tuple[str, str, requests.Session], tmp_path: Path
) -> None:
    """A route PUT on the server is served to the client, then a kill switch, then 304s."""
    url, key, admin = logos
    resp = admin.put(f"{url}/v1/routes/support", json=ROUTE, timeout=30)
    assert resp.status_code in (200, 201), resp.text
    router = Router(server_url=url, api_key=key, state_dir=tmp_path / "state")
    try:
        router.refresh_now()
        d = router.decide("support", "gpt-4o", {"user_id": "u1"})
        assert d is not None
        assert (d.variant, d.model) == ("ft-1", "ft:gpt-4o-mini:acme::x1")

        router.refresh_now()
        assert router.stats()["source"]["not_modified"] == 1

        resp = admin.put(f"{url}/v1/routes/support", json={**ROUTE, "kill_switch": True},
                         timeout=30)  # fmt: skip
        assert resp.status_code in (200, 201), resp.text
        router.refresh_now()
        d = router.decide("support", "gpt-4o", {"user_id": "u1"})
        assert d is not None
        assert (d.model, d.reason) == ("gpt-4o", "kill_switch")
        assert router.stats()["source"]["errors"] == 0
    finally:
        router.close()
