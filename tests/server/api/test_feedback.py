"""POST /v1/feedback: by logos id or provider id, early feedback, idempotency."""

from __future__ import annotations

from typing import Any

from logos_shift.server import Database


def _summary(admin: Any) -> Any:
    return admin.get("/v1/datasets/support/calls").json()["calls"][0]["feedback"]


def test_feedback_by_logos_id_and_by_provider_id(admin: Any, call_factory: Any) -> None:
    """Feedback joins its call whether it names the logos id or the provider response id."""
    a, b = call_factory(n=1), call_factory(n=2)
    admin.ingest([a, b])
    ra = admin.post("/v1/feedback", json={"target": a["id"], "outcome": "success", "score": 1})
    rb = admin.post("/v1/feedback", json={"target": b["response_id"], "outcome": "failure"})
    assert ra.json()["call_id"] == a["id"]
    assert rb.json()["call_id"] == b["id"]
    calls = admin.get("/v1/datasets/support/calls").json()["calls"]
    by_id = {c["record"]["id"]: c["feedback"] for c in calls}
    assert by_id[a["id"]] == {"outcome": "success", "score": 1.0, "count": 1}
    assert by_id[b["id"]] == {"outcome": "failure", "score": None, "count": 1}


def test_feedback_before_the_call_is_joined_when_it_arrives(admin: Any, call_factory: Any) -> None:
    """Feedback for a call not yet uploaded is answered 202 `pending` (kept, listed by
    /v1/feedback/pending) and joined on arrival, after which nothing is pending."""
    call = call_factory()
    r = admin.post("/v1/feedback", json={"target": call["response_id"], "outcome": "success"})
    assert r.status_code == 202
    body = r.json()
    assert body["call_id"] is None
    assert body["pending"] is True
    assert (
        f"no call with id or response id {call['response_id']!r} has arrived yet"
        in (body["message"])
    )
    waiting = admin.get("/v1/feedback/pending").json()
    assert waiting["count"] == 1
    assert waiting["feedback"][0]["target"] == call["response_id"]
    admin.ingest([call])
    assert _summary(admin) == {"outcome": "success", "score": None, "count": 1}
    assert admin.get("/v1/feedback/pending").json() == {"count": 0, "feedback": []}


def test_feedback_is_idempotent_on_its_id(
    admin: Any, call_factory: Any, db: Database, rows: Any
) -> None:
    """Posting feedback with the same id twice stores it once and says duplicate."""
    call = call_factory()
    admin.ingest([call])
    body = {"id": "fb-1", "target": call["id"], "outcome": "success"}
    assert admin.post("/v1/feedback", json=body).json()["status"] == "ok"
    again = admin.post("/v1/feedback", json=body).json()
    assert again == {"id": "fb-1", "status": "duplicate", "call_id": call["id"],
                     "pending": False, "message": None}  # fmt: skip
    assert rows(db, "feedback") == 1
    assert _summary(admin)["count"] == 1


def test_latest_feedback_decides_the_outcome(admin: Any, call_factory: Any) -> None:
    """With several feedbacks on one call, the latest by timestamp sets outcome and score."""
    call = call_factory()
    admin.ingest([call])
    later = {"target": call["id"], "outcome": "failure", "ts": "2026-11-24T10:00:00Z"}
    earlier = {"target": call["id"], "outcome": "success", "ts": "2026-11-24T09:00:00Z"}
    admin.post("/v1/feedback", json=later)
    admin.post("/v1/feedback", json=earlier)
    assert _summary(admin) == {"outcome": "failure", "score": None, "count": 2}


def test_bad_feedback_is_refused(admin: Any, db: Database, rows: Any) -> None:
    """Bad outcome, wrong types, unknown fields: 4xx, nothing stored."""
    bad = [
        ({"target": "x", "outcome": "great"}, 422),
        ({"target": "x", "outcome": "success", "score": "high"}, 422),
        ({"target": "x", "outcome": "success", "extra": 1}, 422),
        ({"target": "", "outcome": "success"}, 422),
        ({"outcome": "success"}, 422),
        ({"target": "x", "outcome": "success", "ts": "soon"}, 422),
    ]
    for body, status in bad:
        r = admin.post("/v1/feedback", json=body)
        assert r.status_code == status, (body, r.text)
        assert r.json()["message"]
    r = admin.post("/v1/feedback", data=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 422
    assert rows(db, "feedback") == 0
