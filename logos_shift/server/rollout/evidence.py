"""What the engine sees: both arms' evidence, read from the aggregates kept at ingest.

A variant call that fell back to control counts as a variant error, and its
feedback is not credited to the variant (the user saw control's answer).
Feedback counts ``success`` and ``failure``; ``neutral`` is no verdict.  The
counting happens at ingest (:mod:`logos_shift.server.store.aggregates`); here the
sums are read, costed with the project's prices as they are now, and handed to
the engine — a read of a few rows per arm, whatever the number of calls.
"""

from __future__ import annotations

from logos_shift.server.store import aggregates, prices
from logos_shift.server.store.db import Database

from .types import ArmStats, Evidence

__all__ = ["evidence"]


def evidence(
    db: Database,
    project_id: int,
    route: str,
    control: str,
    variant: str,
    since: float,
    stage_from: float | None = None,
    unit_key: str | None = "user_id",
) -> Evidence:
    """Return the two arms' evidence of a route's current rollout.

    Args:
        db: the database.
        project_id: the project.
        route: the route.
        control: the control arm's name.
        variant: the variant's name.
        since: the canary's start: calls at or after it count.
        stage_from: also count each arm's calls made at or after this time
            (``Evidence.stage_calls``), and its distinct units plus unit-less
            calls (``Evidence.stage_units``), for the sample-ratio check.
        unit_key: the route's ``assignment.unit`` metadata key (None: count
            calls only).  Units are read at ingest with the key the route has
            then.

    Returns:
        The evidence.
    """
    totals = aggregates.read(db, project_id, route, (control, variant), since, stage_from)
    table = prices.effective_table(db, project_id)
    arms = {arm: _stats(t, table) for arm, t in totals.cumulative.items()}
    stage_calls = stage_units = None
    if stage_from is not None:
        v, c = totals.stage[variant], totals.stage[control]
        stage_calls = (v.calls, c.calls)
        if unit_key:
            stage_units = (v.units + v.unitless, c.units + c.unitless)
    return Evidence(
        control=arms[control],
        variant=arms[variant],
        stage_calls=stage_calls,
        stage_units=stage_units,
    )


def _stats(t: aggregates.ArmTotals, table: dict[str, tuple[float, float]]) -> ArmStats:
    cost_n, cost_sum, cost_sumsq = 0, 0.0, 0.0
    for model, (n, tin, tout, tin2, tinout, tout2) in t.cost.items():
        price = prices.lookup(table, model)
        if price is None:
            continue
        pin, pout = price[0] / 1e6, price[1] / 1e6
        cost_n += int(n)
        cost_sum += tin * pin + tout * pout
        cost_sumsq += tin2 * pin * pin + 2 * tinout * pin * pout + tout2 * pout * pout
    return ArmStats(
        calls=t.calls,
        errors=t.errors,
        feedback=t.feedback,
        successes=float(t.successes),
        cost_n=cost_n,
        cost_sum=cost_sum,
        cost_sumsq=cost_sumsq,
        latency=t.latency,
    )
