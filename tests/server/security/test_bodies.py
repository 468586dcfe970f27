"""Hostile bodies: gzip with many members, huge records, huge listings, strings that do not
serialise, cursors and numbers out of range.  Each is a 4xx (or a per-record error), never a
500, never hours of CPU, never gigabytes of memory."""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import Callable
from typing import Any

import pytest
import requests

from logos_shift.server import Database
from tests.server.support import Api

ROUTE = {
    "match": {"dataset": "support"},
    "control": {"name": "base", "model": "gpt-4o"},
    "variants": [{"name": "ft", "model": "ft:x", "fallback": True}],
    "rollout": {"variant_pct": 0.1},
}


def _gz_post(api: Api, body: bytes) -> Any:
    headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    return api.post("/v1/ingest", data=body, headers=headers, timeout=120)


def test_a_body_of_many_empty_gzip_members_is_refused(ingest_api: Api) -> None:
    """4 MiB of empty gzip members (200,000 of them) is a 413 naming the member cap."""
    member = gzip.compress(b"")
    body = member * (4 * 1024 * 1024 // len(member)) + gzip.compress(b"[]")
    r = _gz_post(ingest_api, body)
    assert r.status_code == 413, r.text[:200]
    assert "gzip members" in r.json()["message"]


def test_a_few_gzip_members_are_still_one_batch(ingest_api: Api, call_factory: Any) -> None:
    """A body split into several gzip members (as some writers do) is decoded as one."""
    data = json.dumps([call_factory(n=i) for i in range(3)]).encode()
    parts = [data[:10], data[10:500], data[500:]]
    r = _gz_post(ingest_api, b"".join(gzip.compress(p) for p in parts))
    assert r.status_code == 200, r.text
    assert r.json()["accepted"] == 3


def test_an_oversized_record_is_refused_on_its_own(
    ingest_api: Api, call_factory: Any, db: Database, rows: Callable[[Database, str], int]
) -> None:
    """A 20 MiB record (60 KiB gzip'd) is refused with a per-record error; its batch mates
    are stored; the database does not grow by the record."""
    small = call_factory(n=1)
    huge = call_factory(n=2, input={"messages": [{"role": "user", "content": "a" * (20 << 20)}]})
    r = ingest_api.ingest([small, huge])
    assert r.status_code == 200, r.text[:300]
    res = r.json()["results"]
    assert res[0]["status"] == "ok"
    assert res[1]["status"] == "error"
    assert "bytes; the limit is 1048576" in res[1]["error"]
    assert rows(db, "calls") == 1


def test_what_the_client_sends_is_never_refused_for_size(
    server: Any, keys: Any, admin: Api, tmp_path: Any
) -> None:
    """The real client truncates records above its max_record_bytes (the server's default
    limit) before sending, so a huge call and a record just under the limit (whose numbers
    serialise longer on the server) are both stored."""
    import logos_shift

    ls = logos_shift.init(
        server_url=server.url, api_key=keys.ingest, spool_dir=str(tmp_path / "spool"),
        state_dir=str(tmp_path / "state"),
    )  # fmt: skip

    @ls(dataset="big")
    def echo(x: Any) -> Any:
        return {"ok": True}

    echo("z" * (8 << 20))
    echo([1e-05] * 170_000)  # about 1.0 MB as the client writes it, 1.3 MB as JSON from Rust
    assert ls.flush(30)
    ls.shutdown(timeout=10)
    stats = ls.stats()
    assert stats.get("dropped", 0) == 0, stats
    calls = admin.get("/v1/datasets/big/calls").json()["calls"]
    assert len(calls) == 2
    meta = [c["record"]["metadata"] for c in calls]
    assert any("logos_shift.truncated_bytes" in m for m in meta)


def test_call_listings_are_bounded_by_bytes_and_streamed(
    ingest_api: Api, admin: Api, call_factory: Any
) -> None:
    """Twelve 900 KiB calls do not come back in one 100-call page: pages stop at the byte
    limit (8 MiB), and following next_cursor returns every call exactly once."""
    text = "b" * (900 * 1024)
    ids = []
    for batch in range(3):
        recs = [call_factory(n=batch * 4 + i, output={"text": text}) for i in range(4)]
        ids += [c["id"] for c in recs]
        assert ingest_api.ingest(recs).json()["accepted"] == 4
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": 100, **({"cursor": cursor} if cursor else {})}
        r = admin.get("/v1/datasets/support/calls", params=params, stream=True)
        assert r.status_code == 200
        assert r.headers.get("transfer-encoding") == "chunked"
        body = r.json()
        assert len(r.content) <= 8 * 1024 * 1024 + 1024 * 1024
        seen += [c["record"]["id"] for c in body["calls"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages >= 2
    assert sorted(seen) == sorted(ids)


def test_a_route_with_a_lone_surrogate_is_refused_and_config_keeps_working(admin: Api) -> None:
    """A lone surrogate anywhere in a route is a 422; /v1/config and /v1/routes stay 200."""
    bodies = [
        {**ROUTE, "control": {"name": "base", "model": "gpt-4o\ud800"}},
        {**ROUTE, "match": {"dataset": "sup\udfffport"}},
        {**ROUTE, "variants": [{"name": "ft", "model": "m", "param_overrides": {"x": "\ud800"}}]},
        {**ROUTE, "variants": [{"name": "ft", "model": "m", "param_overrides": {"\ud800": 1}}]},
        {**ROUTE, "policy": {"note": ["ok", "\udc00"]}},
    ]
    for body in bodies:
        raw = json.dumps(body).encode()  # ensure_ascii: the surrogate travels as \\ud800
        r = admin.put("/v1/routes/support", data=raw, headers={"Content-Type": "application/json"})
        assert r.status_code == 422, (body, r.status_code, r.text)
    assert admin.get("/v1/config").status_code == 200
    assert admin.get("/v1/routes").json() == {"routes": {}}


@pytest.mark.parametrize(
    "cursor",
    [
        base64.urlsafe_b64encode(b"[" + b"9" * 400 + b', "x"]').decode(),
        base64.urlsafe_b64encode(b'[NaN, "x"]').decode(),
        base64.urlsafe_b64encode(b'[1e999, "x"]').decode(),
        base64.urlsafe_b64encode(b"[" * 500 + b"]" * 500).decode()[:1000],
        "not base64 at all!",
    ],
)
def test_a_made_up_cursor_is_a_400_and_the_connection_survives(admin: Api, cursor: str) -> None:
    """A cursor with a 400-digit number, NaN, Infinity or deep nesting is a 400; the next
    request on the same kept-alive connection works."""
    r = admin.get("/v1/datasets/support/calls", params={"cursor": cursor})
    assert r.status_code == 400, r.text
    assert admin.get("/v1/datasets").status_code == 200


_PCT = json.dumps({**ROUTE, "rollout": {"variant_pct": 0.1}})
_OVERRIDE = json.dumps({**ROUTE, "variants": [{"name": "ft", "model": "m",
                                               "param_overrides": {"t": 1}}]})  # fmt: skip
NAN_BODIES = [
    ("PUT", "/v1/prices/gpt-4o", b'{"input_per_mtok": NaN, "output_per_mtok": 1}'),
    ("PUT", "/v1/prices/gpt-4o", b'{"input_per_mtok": 1e999, "output_per_mtok": 1}'),
    ("POST", "/v1/feedback", b'{"target": "x", "outcome": "success", "score": Infinity}'),
    ("POST", "/v1/feedback", b'{"target": "x", "outcome": "success", "metadata": {"a": NaN}}'),
    ("PUT", "/v1/routes/support", _PCT.replace("0.1", "NaN").encode()),
    ("PUT", "/v1/routes/support", _PCT.replace("0.1", "1" + "0" * 400).encode()),
    ("PUT", "/v1/routes/support", _OVERRIDE.replace(": 1}", ": -Infinity}").encode()),
]


@pytest.mark.parametrize(("method", "path", "body"), NAN_BODIES)
def test_nan_and_infinity_are_refused(admin: Api, method: str, path: str, body: bytes) -> None:
    """NaN, Infinity and numbers that overflow to infinity are a 4xx on every JSON endpoint."""
    r = admin.request(method, path, data=body, headers={"Content-Type": "application/json"})
    assert 400 <= r.status_code < 500, (path, body, r.status_code, r.text)
    assert admin.get("/v1/config").status_code == 200
    assert admin.get("/v1/prices").status_code == 200


def test_a_record_with_an_overflowing_number_is_refused_and_listings_work(
    ingest_api: Api, admin: Api, call_factory: Any
) -> None:
    """A record holding 1e999 (JSON's way to spell infinity) gets a per-record error instead of
    being stored as Infinity (which then broke every listing of its dataset)."""
    good = json.dumps(call_factory(n=1))
    bad = json.dumps(call_factory(n=2, input={"x": 12345})).replace("12345", "1e999")
    r = ingest_api.post(
        "/v1/ingest", data=gzip.compress(f"[{good},{bad}]".encode()),
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
    )  # fmt: skip
    assert r.status_code == 200
    assert [x["status"] for x in r.json()["results"]] == ["ok", "error"]
    listing = admin.get("/v1/datasets/support/calls")
    assert listing.status_code == 200
    assert len(listing.json()["calls"]) == 1
    assert admin.get("/v1/datasets/support/export").status_code == 200


FINETUNE_BODIES = [
    b'{"dataset": "d", "base_model": "m", "policy": {"min_stage_s": NaN}}',
    b'{"dataset": "d", "base_model": "m", "min_score": Infinity}',
    b'{"dataset": "d", "base_model": "m", "since": 1e999}',
    b'{"dataset": "d", "base_model": "m", "policy": {"stages": [1' + b"0" * 400 + b", 1.0]}}",
    b'{"dataset": "d", "base_model": "m", "seed": 1' + b"0" * 400 + b"}",
    b'{"dataset": "d", "base_model": "m", "until": -5}',
]


@pytest.mark.parametrize("body", FINETUNE_BODIES)
def test_finetune_numbers_out_of_range_are_refused(full_server: Any, body: bytes) -> None:
    """NaN, Infinity and out-of-range numbers in a fine-tune request are a 422, never a 500
    (before: stored as NaN and answered 202, or a 400-digit integer crashed the policy)."""
    running, keys = full_server
    r = requests.post(
        running.url + "/v1/finetune", data=body, timeout=30,
        headers={"Authorization": f"Bearer {keys['admin']}", "Content-Type": "application/json"},
    )  # fmt: skip
    assert r.status_code == 422, (body[:80], r.status_code, r.text)
