"""Per-variant route statistics and the editable price table, over HTTP."""

from __future__ import annotations

from typing import Any

import pytest

from logos_shift.server.stats.intervals import wilson


def test_route_stats_per_variant(admin: Any, call_factory: Any, feedback_factory: Any) -> None:
    """Per variant: calls, feedback, successes, errors, fallbacks, latency, tokens and cost."""
    base = [
        call_factory(route="support", variant="base", latency_ms=float(10 * (i + 1)))
        for i in range(4)
    ]
    ft = [
        call_factory(
            route="support", variant="ft-1", served_model="ft:gpt-4o-mini:acme::x1", latency_ms=5.0
        ),
        call_factory(
            route="support",
            variant="ft-1",
            served_model="gpt-4o",
            fallback=True,
            error={"type": "NotFoundError", "message": "no model", "status": 404},
            latency_ms=7.0,
        ),
    ]
    elsewhere = call_factory(route="sales", variant="base")
    fbs = [
        feedback_factory(base[0]["id"], "success"),
        feedback_factory(base[1]["id"], "success"),
        feedback_factory(base[2]["id"], "failure"),
        feedback_factory(base[3]["id"], "neutral"),
        feedback_factory(ft[0]["response_id"], "success"),
    ]
    admin.ingest([*base, *ft, elsewhere, *fbs])
    stats = admin.get("/v1/routes/support/stats").json()
    assert stats["route"] == "support"
    b, f = stats["variants"]["base"], stats["variants"]["ft-1"]
    assert (b["calls"], b["feedback"], b["successes"], b["failures"]) == (4, 4, 2, 1)
    assert b["feedback_rate"] == 1.0
    assert b["success_rate"] == pytest.approx(2 / 3)
    assert b["success_ci95"] == pytest.approx(list(wilson(2, 3)))  # type: ignore[arg-type]
    assert b["latency_ms_p50"] == 25.0
    assert b["latency_ms_p95"] == pytest.approx(38.5)
    assert (b["input_tokens"], b["output_tokens"]) == (40, 80)
    assert b["cost_usd"] == pytest.approx((40 * 2.5 + 80 * 10.0) / 1e6)
    assert (f["calls"], f["error_rate"], f["fallback_rate"], f["feedback_rate"]) == (
        2,
        0.5,
        0.5,
        0.5,
    )
    assert f["cost_usd"] == pytest.approx((10 * 0.30 + 20 * 1.20 + 10 * 2.5 + 20 * 10.0) / 1e6)
    assert admin.get("/v1/routes/support/stats?since=2030-01-01T00:00:00Z").json()["variants"] == {}


def test_prices_are_editable_per_project(admin: Any, other: Any, call_factory: Any) -> None:
    """PUT /v1/prices/{model} changes this project's costs only; DELETE restores the default."""
    admin.ingest([call_factory(route="r", variant="v", served_model="my-model")])
    assert admin.get("/v1/routes/r/stats").json()["variants"]["v"]["unpriced_calls"] == 1
    r = admin.put("/v1/prices/my-model", json={"input_per_mtok": 1.0, "output_per_mtok": 2.0})
    assert r.status_code == 200
    v = admin.get("/v1/routes/r/stats").json()["variants"]["v"]
    assert v["cost_usd"] == pytest.approx((10 * 1.0 + 20 * 2.0) / 1e6)
    assert v["unpriced_calls"] == 0
    assert admin.get("/v1/prices").json()["prices"]["my-model"] == {
        "input_per_mtok": 1.0,
        "output_per_mtok": 2.0,
    }
    assert "my-model" not in other.get("/v1/prices").json()["prices"]
    admin.put("/v1/prices/ft:gpt-4o-mini", json={"input_per_mtok": 9, "output_per_mtok": 9})
    assert admin.get("/v1/prices").json()["prices"]["ft:gpt-4o-mini"]["input_per_mtok"] == 9
    assert admin.delete("/v1/prices/ft:gpt-4o-mini").status_code == 204
    assert admin.get("/v1/prices").json()["prices"]["ft:gpt-4o-mini"]["input_per_mtok"] == 0.30
    assert admin.delete("/v1/prices/ft:gpt-4o-mini").status_code == 404
    bad = admin.put("/v1/prices/x", json={"input_per_mtok": -1, "output_per_mtok": 1})
    assert bad.status_code == 422
