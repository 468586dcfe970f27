"""Routes CRUD (validated with the router's schema) and GET /v1/config with ETag / 304."""

from __future__ import annotations

from typing import Any

import pytest

from logos_shift.routing import validate_config


@pytest.fixture
def route() -> dict[str, Any]:
    """A valid route in the router's schema."""
    return {
        "match": {"dataset": "support", "model": "gpt-4o"},
        "control": {"name": "base", "model": "gpt-4o"},
        "variants": [{"name": "ft-1", "model": "ft:gpt-4o-mini:acme::x1", "fallback": True}],
        "assignment": {"unit": "user_id", "seed": "support", "bucket_version": 1},
        "rollout": {"variant_pct": 0.10, "holdout_pct": 0.0},
        "breaker": {"consecutive_errors": 5, "cooldown_s": 300},
        "kill_switch": False,
    }


def test_put_get_delete_route_and_config_follows(admin: Any, route: dict[str, Any]) -> None:
    """PUT creates (201) then replaces (200) a route, bumping the version; DELETE removes it."""
    assert admin.get("/v1/config").json() == {"version": 0, "routes": {}}
    r = admin.put("/v1/routes/support", json=route)
    assert r.status_code == 201
    assert r.json()["version"] == 1
    stored = admin.get("/v1/routes/support").json()
    assert validate_config({"routes": {"support": stored}}).routes["support"].variants[0].model == (
        "ft:gpt-4o-mini:acme::x1"
    )
    config = admin.get("/v1/config").json()
    assert config["version"] == 1
    assert config == validate_config(config).to_json()
    route["rollout"]["variant_pct"] = 0.25
    r = admin.put("/v1/routes/support", json=route)
    assert r.status_code == 200
    assert r.json()["version"] == 2
    assert admin.get("/v1/config").json()["routes"]["support"]["rollout"]["variant_pct"] == 0.25
    assert list(admin.get("/v1/routes").json()["routes"]) == ["support"]
    assert admin.delete("/v1/routes/support").status_code == 204
    assert admin.get("/v1/routes/support").status_code == 404
    assert admin.delete("/v1/routes/support").status_code == 404
    assert admin.get("/v1/config").json() == {"version": 3, "routes": {}}


def test_config_etag_gives_304_until_a_route_changes(
    admin: Any, ingest_api: Any, route: dict[str, Any]
) -> None:
    """If-None-Match with the current ETag gives 304 (no body); a route change gives a new ETag."""
    admin.put("/v1/routes/support", json=route)
    first = ingest_api.get("/v1/config")
    etag = first.headers["ETag"]
    again = ingest_api.get("/v1/config", headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["ETag"] == etag
    weak = ingest_api.get("/v1/config", headers={"If-None-Match": f'"x", W/{etag}'})
    assert weak.status_code == 304
    route["kill_switch"] = True
    admin.put("/v1/routes/support", json=route)
    changed = ingest_api.get("/v1/config", headers={"If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.headers["ETag"] != etag
    assert changed.json()["routes"]["support"]["kill_switch"] is True


def test_invalid_routes_are_refused_with_every_problem(admin: Any, route: dict[str, Any]) -> None:
    """A route the router would refuse gets 422 listing each problem, and nothing changes."""
    bad = dict(route, variants=[{"name": "ft-1"}], rollout={"variant_pct": 7}, colour="red")
    r = admin.put("/v1/routes/support", json=bad)
    assert r.status_code == 422
    body = r.json()
    assert body["error"] == "invalid_route"
    assert len(body["details"]) >= 2
    assert any("routes.support.variants[0].model" in d for d in body["details"])
    assert any("colour" in d for d in body["details"])
    assert admin.put("/v1/routes/support", json=[1, 2]).status_code == 422
    assert admin.put("/v1/routes/bad%20name", json=route).status_code == 422
    assert admin.get("/v1/config").json() == {"version": 0, "routes": {}}


def test_two_routes_with_the_same_match_are_refused(admin: Any, route: dict[str, Any]) -> None:
    """The whole resulting config is validated, so a clashing second route is refused."""
    assert admin.put("/v1/routes/support", json=route).status_code == 201
    r = admin.put("/v1/routes/support-2", json=route)
    assert r.status_code == 422
    assert "same match" in r.text
    assert list(admin.get("/v1/config").json()["routes"]) == ["support"]
