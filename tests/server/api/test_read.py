"""The small read endpoints the CLI views use: one call, newest-first listings, stats of an
unknown route."""

from __future__ import annotations

from typing import Any


def test_one_call_by_id_or_response_id_with_its_feedback(
    admin: Any, other: Any, call_factory: Any, feedback_factory: Any
) -> None:
    """GET /v1/calls/{id} finds a call by its id or its provider response id, with every
    feedback event oldest first; another project's key gets 404 (its ids stay invisible)."""
    call = call_factory(n=3)
    first = feedback_factory(call["id"], "failure", ts="2026-11-23T22:00:00.000Z")
    second = feedback_factory(call["response_id"], "success", ts="2026-11-23T23:00:00.000Z")
    admin.ingest([call, first, second])
    for ident in (call["id"], call["response_id"]):
        r = admin.get(f"/v1/calls/{ident}")
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["record"]["id"] == call["id"]
        assert body["feedback"] == {"outcome": "success", "score": 1.0, "count": 2}
        assert [e["id"] for e in body["feedback_events"]] == [first["id"], second["id"]]
    missing = admin.get("/v1/calls/nope")
    assert missing.status_code == 404
    assert "no call 'nope' in this project" in missing.json()["message"]
    assert other.get(f"/v1/calls/{call['id']}").status_code == 404


def test_calls_newest_first_pages_without_gaps(admin: Any, call_factory: Any) -> None:
    """order=newest lists the newest call first; its cursor walks back over every call once."""
    calls = [call_factory(n=i) for i in range(7)]
    admin.ingest(calls)
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"order": "newest", "limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = admin.get("/v1/datasets/support/calls", params=params).json()
        seen.extend(c["record"]["id"] for c in page["calls"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [c["id"] for c in reversed(calls)]


def test_stats_of_an_unknown_route_is_404_naming_the_known_ones(
    admin: Any, call_factory: Any
) -> None:
    """A route neither configured nor named by a call is a 404 listing the known routes;
    a route that only calls name (no config) has stats."""
    admin.ingest([call_factory(n=1, route="support", variant="control")])
    r = admin.get("/v1/routes/suport/stats")
    assert r.status_code == 404
    assert r.json()["message"] == (
        "no route 'suport' in this project (no route config and no call names it); "
        "known routes: none yet"
    )
    ok = admin.get("/v1/routes/support/stats")
    assert ok.status_code == 200
    assert ok.json()["variants"]["control"]["calls"] == 1
