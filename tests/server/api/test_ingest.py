"""POST /v1/ingest: storage, idempotency, per-record results and bad input."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from typing import Any

import requests

from logos_shift.server import Database

Factory = Callable[..., dict[str, Any]]
Rows = Callable[[Database, str], int]


def test_gzip_batch_is_stored_with_one_result_per_record(
    ingest_api: Any, call_factory: Factory, db: Database, rows: Rows
) -> None:
    """A gzip'd JSON array is stored and answered with one ok result per record, in order."""
    recs = [call_factory(n=i) for i in range(5)]
    r = ingest_api.ingest(recs, **{"X-Batch-Id": "b-1"})
    assert r.status_code == 200
    body = r.json()
    assert [x["id"] for x in body["results"]] == [rec["id"] for rec in recs]
    assert {x["status"] for x in body["results"]} == {"ok"}
    assert (body["accepted"], body["duplicates"], body["errors"]) == (5, 0, 0)
    assert rows(db, "calls") == 5


def test_plain_json_body_is_accepted(
    ingest_api: Any, call_factory: Factory, db: Database, rows: Rows
) -> None:
    """An uncompressed JSON array is accepted too."""
    r = ingest_api.ingest([call_factory()], gz=False)
    assert r.status_code == 200
    assert r.json()["accepted"] == 1
    assert rows(db, "calls") == 1


def test_resent_batch_is_reported_duplicate_and_not_stored_twice(
    ingest_api: Any, call_factory: Factory, feedback_factory: Factory, db: Database, rows: Rows
) -> None:
    """Sending the same batch again (at-least-once delivery) stores nothing new."""
    call = call_factory()
    recs = [call, feedback_factory(call["id"])]
    assert ingest_api.ingest(recs).json()["accepted"] == 2
    again = ingest_api.ingest(recs).json()
    assert [x["status"] for x in again["results"]] == ["duplicate", "duplicate"]
    assert again["accepted"] == 0
    assert again["duplicates"] == 2
    assert rows(db, "calls") == 1
    assert rows(db, "feedback") == 1


def test_duplicate_inside_one_batch(
    ingest_api: Any, call_factory: Factory, db: Database, rows: Rows
) -> None:
    """The same id twice in one batch is stored once; the second is a duplicate."""
    call = call_factory()
    body = ingest_api.ingest([call, dict(call)]).json()
    assert [x["status"] for x in body["results"]] == ["ok", "duplicate"]
    assert rows(db, "calls") == 1


def test_invalid_records_get_errors_and_valid_ones_are_stored(
    ingest_api: Any, call_factory: Factory, db: Database, rows: Rows
) -> None:
    """A mixed batch answers 200: bad records get a per-record error, good ones are stored."""
    good = call_factory()
    bad = [
        call_factory(schema=2),
        call_factory(unknown_field=1),
        call_factory(fallback="no"),
        call_factory(usage={"input_tokens": "ten"}),
        call_factory(ts="yesterday"),
        call_factory(latency_ms=float("inf")) | {"latency_ms": -1},
        {"schema": 1, "type": "span", "id": "x", "ts": "2026-11-23T21:00:00.000Z"},
        call_factory(dataset="a\x00b"),
        {"schema": 1, "type": "feedback", "id": "f", "ts": "2026-11-23T21:00:00Z",
         "target": "t", "outcome": "great"},
        call_factory(id=""),
    ]  # fmt: skip
    r = ingest_api.ingest([good, *bad])
    assert r.status_code == 200
    body = r.json()
    assert body["results"][0]["status"] == "ok"
    errors = body["results"][1:]
    assert all(x["status"] == "error" and x["error"] for x in errors), errors
    assert "schema" in errors[0]["error"]
    assert "unknown_field" in errors[1]["error"]
    assert "fallback" in errors[2]["error"]
    assert "usage.input_tokens" in errors[3]["error"]
    assert "ts" in errors[4]["error"]
    assert "type" in errors[6]["error"]
    assert "outcome" in errors[8]["error"]
    assert body["accepted"] == 1
    assert body["errors"] == len(bad)
    assert rows(db, "calls") == 1


def test_feedback_in_the_same_batch_is_joined(
    ingest_api: Any, admin: Any, call_factory: Factory, feedback_factory: Factory
) -> None:
    """Feedback sent in the same batch as its call (by provider response id) is joined to it."""
    call = call_factory()
    fb = feedback_factory(call["response_id"], "failure", score=0.2)
    assert ingest_api.ingest([call, fb]).json()["accepted"] == 2
    page = admin.get("/v1/datasets/support/calls").json()
    assert page["calls"][0]["feedback"] == {"outcome": "failure", "score": 0.2, "count": 1}


def test_feedback_before_its_call_is_kept_and_joined_later(
    ingest_api: Any, admin: Any, call_factory: Factory, feedback_factory: Factory
) -> None:
    """Feedback that arrives first waits and is joined when the call arrives."""
    call = call_factory()
    assert (
        ingest_api.ingest([feedback_factory(call["id"], "success", score=0.9)]).json()["accepted"]
        == 1
    )
    assert admin.get("/v1/datasets").json()["datasets"] == []
    ingest_api.ingest([call])
    page = admin.get("/v1/datasets/support/calls").json()
    assert page["calls"][0]["feedback"] == {"outcome": "success", "score": 0.9, "count": 1}


def _no_change(db: Database, rows: Rows) -> None:
    assert rows(db, "calls") == 0
    assert rows(db, "feedback") == 0


def test_malformed_bodies_are_refused_and_store_nothing(
    ingest_api: Any, call_factory: Factory, db: Database, rows: Rows
) -> None:
    """Bad gzip, bad JSON, NaN, a non-array or a non-object element give 400 and store nothing."""
    good = json.dumps([call_factory()]).encode()
    cases = [
        (b"\x1f\x8b\x08garbage", {"Content-Encoding": "gzip"}, "gzip"),
        (gzip.compress(good)[:-8], {"Content-Encoding": "gzip"}, "gzip"),
        (good[:-3], {}, "JSON"),
        (b'[{"schema": NaN}]', {}, "JSON"),
        (b'{"records": []}', {}, "array"),
        (json.dumps([call_factory(), 5]).encode(), {}, "element 1"),
        ('["\udcff"]'.encode("utf-8", "surrogateescape"), {}, "JSON"),
    ]
    for body, headers, words in cases:
        r = ingest_api.post("/v1/ingest", data=body, headers=headers)
        assert r.status_code == 400, (body[:40], r.text)
        err = r.json()
        assert err["error"] == "bad_request", err
        assert words in err["message"], err
    _no_change(db, rows)
    assert ingest_api.get("/healthz").json() == {"status": "ok"}


def test_unknown_content_encoding_is_415(
    ingest_api: Any, call_factory: Factory, db: Database, rows: Rows
) -> None:
    """A compression the server does not speak gives 415."""
    r = ingest_api.post("/v1/ingest", data=b"[]", headers={"Content-Encoding": "br"})
    assert r.status_code == 415
    assert "gzip" in r.json()["message"]
    _no_change(db, rows)


def test_oversize_bodies_and_batches_are_413(
    ingest_api: Any, call_factory: Factory, db: Database, rows: Rows, app: Any
) -> None:
    """Too many bytes (declared or streamed), a gzip bomb, or too many records give 413."""
    limits = app.state.limits
    big = b"[" + b" " * limits.max_ingest_bytes + b"]"
    r = ingest_api.post("/v1/ingest", data=big)
    assert r.status_code == 413
    assert "larger than" in r.json()["message"]

    def chunks() -> Any:
        for _ in range(limits.max_ingest_bytes // 65536 + 2):
            yield b" " * 65536

    r = ingest_api.post("/v1/ingest", data=chunks())
    assert r.status_code == 413

    bomb = gzip.compress(b"[" + b" " * (limits.max_decompressed_bytes + 10) + b"]")
    r = ingest_api.post("/v1/ingest", data=bomb, headers={"Content-Encoding": "gzip"})
    assert r.status_code == 413
    assert "decompressed" in r.json()["message"]

    many = [call_factory() for _ in range(limits.max_batch_records + 1)]
    r = ingest_api.ingest(many)
    assert r.status_code == 413
    assert "records" in r.json()["message"]
    _no_change(db, rows)
    assert ingest_api.get("/healthz").status_code == 200


def test_ids_of_another_project_are_separate_records(
    ingest_api: Any,
    other: Any,
    call_factory: Factory,
    feedback_factory: Factory,
    db: Database,
    rows: Rows,
) -> None:
    """A record id another project used is this project's own record; feedback here joins
    this project's call only, never the other project's."""
    theirs = call_factory()
    assert other.ingest([theirs]).json()["accepted"] == 1
    body = ingest_api.ingest([dict(theirs), feedback_factory(theirs["id"])]).json()
    assert [x["status"] for x in body["results"]] == ["ok", "ok"]
    assert rows(db, "calls") == 2
    assert rows(db, "feedback") == 1
    listed = other.get("/v1/datasets/support/calls").json()["calls"]
    assert listed[0]["feedback"]["count"] == 0


def test_record_is_stored_exactly_as_sent(admin: Any, call_factory: Factory) -> None:
    """The raw export returns each record exactly as it was ingested."""
    call = call_factory(metadata={"user_id": "u1", "nested": {"ünï": [1, 2.5, None]}})
    admin.ingest([call])
    lines = admin.get("/v1/datasets/support/export?format=raw").text.splitlines()
    assert [json.loads(x) for x in lines] == [call]


def test_ingest_needs_no_content_type(ingest_api: Any, call_factory: Factory) -> None:
    """The body is read as JSON whatever Content-Type says (the client always sends JSON)."""
    body = json.dumps([call_factory()]).encode()
    r = requests.post(
        ingest_api.base + "/v1/ingest",
        data=body,
        headers={
            "Authorization": ingest_api.session.headers["Authorization"],
            "Content-Type": "text/plain",
        },
        timeout=30,
    )
    assert r.status_code == 200
    assert r.json()["accepted"] == 1
