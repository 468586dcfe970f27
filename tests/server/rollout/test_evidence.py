"""The evidence the engine reads, counted at ingest, equals a count over the stored calls.

Each test stores a rollout and routes, ingests calls and feedback through the
store's ingest (the server's path), and compares :func:`evidence` with the same
figures computed here from the records: late and changed feedback, fallbacks,
errors, unpriced models, calls before the canary or of other arms, stage
transitions, and calls stored before a window they belong to was opened.
"""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import pytest

from logos_shift._capture.record import format_ts
from logos_shift.server import Database
from logos_shift.server.rollout.evidence import evidence
from logos_shift.server.rollout.types import Policy, RolloutState, Status
from logos_shift.server.stats.intervals import percentile
from logos_shift.server.store import ingest as _ingest
from logos_shift.server.store import prices, rollouts, routes
from logos_shift.server.store.keys import ensure_project
from logos_shift.server.store.migrations import migrate

T0 = 1_800_000_000.0
ARMS = ("control", "ft-1")
PRICE = {"gpt-4o": (2.5, 10.0), "ft:gpt-4o-mini": (0.3, 1.2)}


@pytest.fixture
def store(db: Database) -> tuple[Database, int]:
    """A migrated database with project ``acme`` and route ``support`` in canary since T0."""
    migrate(db)
    pid = ensure_project(db, "acme")
    routes.put_route(
        db, pid, "support",
        {"match": {"dataset": "d"}, "control": {"name": "control", "model": "gpt-4o"},
         "variants": [{"name": "ft-1", "model": "ft:gpt-4o-mini", "fallback": True}],
         "assignment": {"unit": "user_id", "seed": "support"}},
    )  # fmt: skip
    for model, (pin, pout) in PRICE.items():
        prices.set_price(db, pid, model, pin, pout)
    return db, pid


def ingest(db: Database, pid: int, records: list[dict[str, Any]]) -> None:
    """Store records through the server's ingest; every one must be accepted."""
    result = _ingest.ingest(db, pid, records)
    assert result.count("error") == 0, [r for r in result.results if r["error"]][:3]


def _rollout(db: Database, pid: int, since: float, stage: int = 0, grace: float = 0.0) -> None:
    row = rollouts.load(db, pid, "support")
    state = RolloutState(
        "support", Status.CANARY, (0.1, 0.5, 1.0), stage, "gpt-4o", "ft:gpt-4o-mini", since=since
    )
    if row is None:
        row = rollouts.RolloutRow(
            state, Policy(srm_grace_s=grace), dataset="d", variant_name="ft-1", canary_since=since
        )
    else:
        row = dataclasses.replace(row, state=state)
    rollouts.save(db, pid, row)


def _calls(rng: random.Random, n: int, start: float, span: float) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        arm = rng.choice([*ARMS, "ft-old"])
        model = rng.choice(["gpt-4o", "ft:gpt-4o-mini", "unpriced-model"])
        usage = rng.choice([None, {"input_tokens": rng.randint(1, 900), "output_tokens": None},
                            {"input_tokens": rng.randint(1, 900),
                             "output_tokens": rng.randint(1, 400)}])  # fmt: skip
        out.append({
            "schema": 1, "type": "call", "id": f"c{start}-{i}",
            "ts": format_ts(start + rng.random() * span), "dataset": "d",
            "route": rng.choice(["support", "support", "support", "other"]), "variant": arm,
            "requested_model": model, "served_model": rng.choice([model, None]),
            "fallback": rng.random() < 0.05,
            "error": {"type": "X", "message": "x"} if rng.random() < 0.05 else None,
            "latency_ms": rng.choice([None, rng.lognormvariate(5, 0.6)]),
            "usage": usage,
            "metadata": rng.choice([{}, {"user_id": f"u{rng.randint(0, 60)}"}]),
        })  # fmt: skip
    return out


def _feedback(rng: random.Random, targets: list[dict[str, Any]], tag: str) -> list[dict[str, Any]]:
    return [
        {"schema": 1, "type": "feedback", "id": f"f{tag}-{i}", "ts": format_ts(T0 + 10_000 + i),
         "target": c["id"], "outcome": rng.choice(["success", "failure", "neutral"])}
        for i, c in enumerate(targets)
    ]  # fmt: skip


def _expected(db: Database, pid: int, since: float, stage_from: float) -> dict[str, dict[str, Any]]:
    """The figures of each arm, counted from the stored rows (the reference)."""
    import sqlalchemy as sa

    from logos_shift.server.store.schema import calls

    table = prices.effective_table(db, pid)
    out: dict[str, dict[str, Any]] = {
        a: {"calls": 0, "errors": 0, "feedback": 0, "successes": 0, "cost_n": 0, "cost": 0.0,
            "lat": [], "stage_calls": 0, "units": set(), "unitless": 0}
        for a in ARMS
    }  # fmt: skip
    with db.read() as conn:
        rows = conn.execute(
            sa.select(calls).where(calls.c.route == "support", calls.c.ts >= since)
        ).mappings()
        for r in rows:
            if r["variant"] not in ARMS:
                continue
            e = out[r["variant"]]
            e["calls"] += 1
            import json

            meta = json.loads(r["record"]).get("metadata") or {}
            if r["ts"] >= stage_from:
                e["stage_calls"] += 1
                if meta.get("user_id"):
                    e["units"].add(meta["user_id"])
                else:
                    e["unitless"] += 1
            if r["is_error"] or r["fallback"]:
                e["errors"] += 1
                continue
            if r["outcome"] in ("success", "failure"):
                e["feedback"] += 1
                e["successes"] += r["outcome"] == "success"
            if r["latency_ms"] is not None:
                e["lat"].append(r["latency_ms"])
            price = prices.lookup(table, r["served_model"] or r["requested_model"])
            if price and (r["input_tokens"] is not None or r["output_tokens"] is not None):
                e["cost_n"] += 1
                e["cost"] += ((r["input_tokens"] or 0) * price[0]
                              + (r["output_tokens"] or 0) * price[1]) / 1e6  # fmt: skip
    return out


def _check(db: Database, pid: int, since: float, stage_from: float) -> None:
    ev = evidence(db, pid, "support", "control", "ft-1", since, stage_from)
    want = _expected(db, pid, since, stage_from)
    assert min(want[a]["calls"] for a in ARMS) > 10  # the case is not vacuous
    for arm, got in (("control", ev.control), ("ft-1", ev.variant)):
        w = want[arm]
        assert (got.calls, got.errors, got.feedback, got.successes, got.cost_n) == (
            w["calls"], w["errors"], w["feedback"], w["successes"], w["cost_n"]
        ), arm  # fmt: skip
        assert got.cost_sum == pytest.approx(w["cost"], rel=1e-9)
        assert got.latency.n == len(w["lat"])
        if w["lat"]:
            assert got.latency.quantile(95) == pytest.approx(percentile(w["lat"], 95), rel=0.03)
    assert ev.stage_calls == (want["ft-1"]["stage_calls"], want["control"]["stage_calls"])
    assert ev.stage_units == tuple(
        len(want[a]["units"]) + want[a]["unitless"] for a in ("ft-1", "control")
    )


def test_aggregates_equal_a_count_over_the_calls(store: tuple[Database, int]) -> None:
    """Calls before and during the canary, feedback before and after its call, verdicts
    changed by later feedback: the aggregates give the figures a scan of the calls gives."""
    db, pid = store
    rng = random.Random(7)
    before = _calls(rng, 150, T0 - 1000, 999)  # stored before the canary began
    ingest(db, pid, before)
    _rollout(db, pid, T0)
    early_fb = _feedback(rng, (batch := _calls(rng, 300, T0, 500))[:100], "early")
    ingest(db, pid, early_fb)  # feedback first: joined when its call arrives
    for i in range(0, 300, 70):
        ingest(db, pid, batch[i : i + 70])
    ingest(db, pid, _feedback(rng, batch[50:250], "late"))
    ingest(db, pid, _feedback(rng, batch[200:300], "later"))  # changes some verdicts again
    _check(db, pid, T0, T0)


def test_a_new_stage_counts_its_window_and_keeps_the_cumulative(
    store: tuple[Database, int],
) -> None:
    """After a transition the SRM window starts afresh (plus the grace period), and calls
    stored with a time past the new window's start are moved into it."""
    db, pid = store
    rng = random.Random(11)
    _rollout(db, pid, T0, grace=30.0)
    first = _calls(rng, 200, T0, 500)
    ahead = _calls(rng, 40, T0 + 700, 100)  # a client clock ahead: past the next window
    ingest(db, pid, first + ahead + _feedback(rng, first, "a"))
    _check(db, pid, T0, T0 + 30.0)
    _rollout(db, pid, T0 + 600, stage=1)  # opens a window at T0 + 630: rebuilt from T0 + 30
    ingest(db, pid, _calls(rng, 150, T0 + 640, 500) + _feedback(rng, ahead, "b"))
    _check(db, pid, T0, T0 + 630.0)


def test_a_database_upgraded_mid_canary_rebuilds_its_aggregates(
    store: tuple[Database, int],
) -> None:
    """A canary whose calls were stored before aggregates existed (no windows) is counted
    from its calls the first time its evidence is read."""

    from logos_shift.server.store.schema import rollout_arm_stats, rollout_windows

    db, pid = store
    rng = random.Random(3)
    _rollout(db, pid, T0)
    ingest(db, pid, (cs := _calls(rng, 200, T0, 500)) + _feedback(rng, cs, "x"))
    with db.write() as conn:  # what an upgraded database has: calls, no aggregates
        conn.execute(rollout_windows.delete())
        conn.execute(rollout_arm_stats.delete())
    _check(db, pid, T0, T0)


def test_a_new_rollout_of_the_route_starts_from_zero(store: tuple[Database, int]) -> None:
    """The next fine-tune of a route (a new generation) counts none of the last one's calls."""
    db, pid = store
    rng = random.Random(5)
    _rollout(db, pid, T0)
    ingest(db, pid, _calls(rng, 100, T0, 100))
    old = rollouts.load(db, pid, "support")
    assert old is not None
    state = dataclasses.replace(old.state, since=T0 + 1000)
    rollouts.save(
        db, pid, rollouts.RolloutRow(state, old.policy, dataset="d", variant_name="ft-1",
                                     canary_since=T0 + 1000)
    )  # fmt: skip
    ev = evidence(db, pid, "support", "control", "ft-1", T0 + 1000, T0 + 1000)
    assert (ev.control.calls, ev.variant.calls, ev.stage_calls) == (0, 0, (0, 0))
    ingest(db, pid, _calls(rng, 100, T0 + 1000, 100))
    _check(db, pid, T0 + 1000, T0 + 1000)
