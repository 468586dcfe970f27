"""Datasets, the paginated and filtered calls listing, and the streamed export."""

from __future__ import annotations

import json
from typing import Any


def _all_pages(admin: Any, query: str, limit: int) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        q = f"{query}&limit={limit}".lstrip("&") + (f"&cursor={cursor}" if cursor else "")
        page = admin.get(f"/v1/datasets/support/calls?{q}").json()
        items.extend(page["calls"])
        cursor = page["next_cursor"]
        if cursor is None:
            return items


def test_datasets_are_listed_with_counts(
    admin: Any, call_factory: Any, feedback_factory: Any
) -> None:
    """Each dataset shows its call count, calls with feedback and time range."""
    a = [call_factory(n=i) for i in range(3)]
    b = call_factory(dataset="sales", ts="2026-11-20T00:00:00.000Z")
    admin.ingest([*a, b, feedback_factory(a[0]["id"])])
    got = admin.get("/v1/datasets").json()["datasets"]
    assert [(d["name"], d["calls"], d["with_feedback"]) for d in got] == [
        ("sales", 1, 0),
        ("support", 3, 1),
    ]
    assert got[0]["first_ts"] == got[0]["last_ts"]


def test_cursor_pagination_returns_every_call_once_in_order(admin: Any, call_factory: Any) -> None:
    """Walking the pages yields every call once, oldest first, even with equal timestamps."""
    recs = [call_factory(n=i % 7) for i in range(23)]
    admin.ingest(recs)
    items = _all_pages(admin, "", 5)
    ids = [c["record"]["id"] for c in items]
    assert sorted(ids) == sorted(r["id"] for r in recs)
    assert len(set(ids)) == 23
    keys = [(c["record"]["ts"], c["record"]["id"]) for c in items]
    assert keys == sorted(keys)


def test_calls_filters(admin: Any, call_factory: Any, feedback_factory: Any) -> None:
    """since/until, outcome (incl. none), variant, model and min_score each narrow the listing."""
    early = call_factory(ts="2026-11-23T10:00:00.000Z", variant="base")
    late = call_factory(ts="2026-11-23T12:00:00.000Z", variant="ft-1", served_model="ft:x")
    plain = call_factory(ts="2026-11-23T11:00:00.000Z", variant="base")
    admin.ingest(
        [
            early,
            late,
            plain,
            feedback_factory(early["id"], "success", score=0.9),
            feedback_factory(late["id"], "failure", score=0.1),
        ]
    )

    def ids(query: str) -> set[str]:
        return {c["record"]["id"] for c in _all_pages(admin, query, 100)}

    assert ids("since=2026-11-23T11:00:00Z") == {late["id"], plain["id"]}
    assert ids("until=2026-11-23T11:00:00Z") == {early["id"]}
    assert ids("since=2026-11-23T09:00:00%2B00:00&until=2026-11-23T12:00:00Z") == {
        early["id"],
        plain["id"],
    }
    assert ids("outcome=success") == {early["id"]}
    assert ids("outcome=failure") == {late["id"]}
    assert ids("outcome=none") == {plain["id"]}
    assert ids("variant=base") == {early["id"], plain["id"]}
    assert ids("model=ft:x") == {late["id"]}
    assert ids("model=gpt-4o") == {early["id"], plain["id"], late["id"]}
    assert ids("min_score=0.5") == {early["id"]}


def test_bad_listing_parameters_are_400_or_422(admin: Any) -> None:
    """An invalid cursor, time, outcome or limit gets a clear 4xx."""
    for query, status in [
        ("cursor=abc", 400),
        ("since=yesterday", 400),
        ("outcome=meh", 422),
        ("limit=0", 422),
        ("limit=100000", 422),
        ("min_score=nan", 422),
    ]:
        r = admin.get(f"/v1/datasets/support/calls?{query}")
        assert r.status_code == status, (query, r.text)
        assert r.json()["message"]


def _tool_call_record(call_factory: Any) -> dict[str, Any]:
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    call = {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}
    return call_factory(
        input={
            "model": "gpt-4o",
            "messages": [{"role": "user", "content": "find"}],
            "tools": tools,
        },
        output={
            "choices": [
                {
                    "message": {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [call],
                        "refusal": None,
                    }
                }
            ]
        },
    )


def test_export_openai_chat_with_outcome_filter_and_tools(
    admin: Any, call_factory: Any, feedback_factory: Any
) -> None:
    """openai-chat export streams one example per successful call, keeping tools and tool calls."""
    good = _tool_call_record(call_factory)
    bad = call_factory(n=2)
    failed = call_factory(
        n=3, output=None, error={"type": "APIError", "message": "x", "status": 500}
    )
    admin.ingest(
        [
            good,
            bad,
            failed,
            feedback_factory(good["response_id"], "success"),
            feedback_factory(bad["id"], "failure"),
            feedback_factory(failed["id"], "success"),
        ]
    )
    r = admin.get("/v1/datasets/support/export?format=openai-chat&outcome=success")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(x) for x in r.text.splitlines()]
    assert lines == [
        {
            "messages": [
                {"role": "user", "content": "find"},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": good["output"]["choices"][0]["message"]["tool_calls"],
                },
            ],
            "tools": good["input"]["tools"],
        }
    ]
    raw = admin.get("/v1/datasets/support/export?format=raw&min_score=0.5").text.splitlines()
    assert {json.loads(x)["id"] for x in raw} == {good["id"], failed["id"]}
    assert admin.get("/v1/datasets/support/export?format=csv").status_code == 422


def test_export_streams_more_than_one_page(admin: Any, call_factory: Any) -> None:
    """An export larger than one internal page returns every call exactly once."""
    recs = [call_factory(n=i) for i in range(1200)]
    for i in range(0, 1200, 400):
        admin.ingest(recs[i : i + 400])
    lines = admin.get("/v1/datasets/support/export?format=openai-chat").text.splitlines()
    assert len(lines) == 1200
    assert len(set(lines)) == 1200
