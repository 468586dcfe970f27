"""API keys: authentication on every endpoint, scopes, and project isolation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from logos_shift.server import Database
from logos_shift.server.store.keys import authenticate, hash_key, list_keys, revoke_key

ENDPOINTS = [
    ("POST", "/v1/ingest"),
    ("POST", "/v1/feedback"),
    ("GET", "/v1/config"),
    ("GET", "/v1/routes"),
    ("GET", "/v1/routes/support"),
    ("PUT", "/v1/routes/support"),
    ("DELETE", "/v1/routes/support"),
    ("GET", "/v1/routes/support/stats"),
    ("GET", "/v1/datasets"),
    ("GET", "/v1/datasets/support/calls"),
    ("GET", "/v1/datasets/support/export"),
    ("GET", "/v1/calls/some-call-id"),
    ("GET", "/v1/feedback/pending"),
    ("GET", "/v1/prices"),
    ("PUT", "/v1/prices/gpt-4o"),
    ("DELETE", "/v1/prices/gpt-4o"),
]
ADMIN_ONLY = [e for e in ENDPOINTS if e[1] not in ("/v1/ingest", "/v1/feedback", "/v1/config")]


def test_every_endpoint_needs_a_key(api_for: Callable[[str | None], Any], keys: Any) -> None:
    """Without a key, or with an unknown one, every /v1 endpoint answers 401 with a JSON error."""
    for key in (None, "lsk_" + "x" * 43, "not-a-key"):
        api = api_for(key)
        for method, path in ENDPOINTS:
            r = api.request(method, path, json={})
            assert r.status_code == 401, (key, method, path, r.status_code)
            assert r.json()["error"] == "unauthorized"
            assert r.headers["WWW-Authenticate"] == "Bearer"


def test_health_needs_no_key(api_for: Callable[[str | None], Any]) -> None:
    """/healthz answers without a key (for load balancers)."""
    assert api_for(None).get("/healthz").json() == {"status": "ok"}


def test_ingest_key_cannot_use_admin_endpoints(ingest_api: Any) -> None:
    """An ingest-scoped key gets 403 on every admin endpoint."""
    for method, path in ADMIN_ONLY:
        r = ingest_api.request(method, path, json={"input_per_mtok": 1, "output_per_mtok": 1})
        assert r.status_code == 403, (method, path)
        assert "admin" in r.json()["message"]


def test_ingest_key_may_ingest_give_feedback_and_read_config(
    ingest_api: Any, call_factory: Any
) -> None:
    """An ingest key may use ingest, feedback and config."""
    call = call_factory()
    assert ingest_api.ingest([call]).status_code == 200
    fb = ingest_api.post("/v1/feedback", json={"target": call["id"], "outcome": "success"})
    assert fb.status_code == 200
    assert ingest_api.get("/v1/config").status_code == 200


def test_revoked_key_is_refused(
    api_for: Callable[[str | None], Any], keys: Any, db: Database
) -> None:
    """A revoked key is answered 401."""
    api = api_for(keys.ingest)
    assert api.get("/v1/config").status_code == 200
    key_id = next(k.id for k in list_keys(db, "acme") if k.scope == "ingest")
    assert revoke_key(db, key_id)
    assert api.get("/v1/config").status_code == 401
    assert not revoke_key(db, key_id)


def test_keys_are_stored_hashed(keys: Any, db: Database) -> None:
    """Only the SHA-256 of a key is stored; the key itself appears nowhere in the database."""
    import sqlalchemy as sa

    with db.read() as conn:
        stored = [tuple(r) for r in conn.execute(sa.text("SELECT * FROM api_keys"))]
    flat = " ".join(str(v) for row in stored for v in row)
    assert keys.admin not in flat
    assert hash_key(keys.admin) in flat
    principal = authenticate(db, keys.admin)
    assert principal is not None
    assert (principal.project, principal.scope) == ("acme", "admin")


def test_a_key_sees_only_its_own_project(
    admin: Any, other: Any, call_factory: Any, route_body: dict[str, Any]
) -> None:
    """Another project's routes, datasets, calls and stats are invisible."""
    admin.ingest([call_factory(route="support", variant="base")])
    assert admin.put("/v1/routes/support", json=route_body).status_code == 201
    assert other.get("/v1/routes/support").status_code == 404
    assert other.delete("/v1/routes/support").status_code == 404
    assert other.get("/v1/routes").json() == {"routes": {}}
    assert other.get("/v1/config").json()["routes"] == {}
    assert other.get("/v1/datasets").json() == {"datasets": []}
    assert other.get("/v1/datasets/support/calls").json()["calls"] == []
    assert other.get("/v1/datasets/support/export").text == ""
    assert other.get("/v1/routes/support/stats").status_code == 404  # as if it did not exist
    assert admin.get("/v1/routes/support").status_code == 200


@pytest.fixture
def route_body() -> dict[str, Any]:
    """A valid route in the router's schema."""
    return {
        "match": {"dataset": "support"},
        "control": {"name": "base", "model": "gpt-4o"},
        "variants": [{"name": "ft-1", "model": "ft:gpt-4o-mini:acme::x1", "fallback": True}],
        "rollout": {"variant_pct": 0.1},
    }
