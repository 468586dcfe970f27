"""Persistence of rollouts: state, events, and the evidence read from stored calls.

Two tables of its own (``rollouts``, ``rollout_events``) created with
``checkfirst`` next to the server's schema; the evidence comes from the
server's ``calls`` table and price table.
"""

from __future__ import annotations

import json
import time
from typing import Any

import sqlalchemy as sa

from . import _prices
from ._db import Database
from ._rollout_types import ArmStats, Evidence, Policy, RolloutState
from ._schema import calls

__all__ = ["RolloutRow", "add_event", "ensure_tables", "evidence", "list_events", "load", "save"]

metadata = sa.MetaData()

rollouts = sa.Table(
    "rollouts",
    metadata,
    sa.Column("project_id", sa.Integer, primary_key=True),
    sa.Column("route", sa.Text, primary_key=True),
    sa.Column("state", sa.Text, nullable=False),
    sa.Column("policy", sa.Text, nullable=False),
    # Everything else the service keeps (job, dataset counts, variant name,
    # webhook URL, evidence start): free-form JSON.
    sa.Column("info", sa.Text, nullable=False),
    sa.Column("updated_at", sa.Double, nullable=False),
)

rollout_events = sa.Table(
    "rollout_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("project_id", sa.Integer, nullable=False),
    sa.Column("route", sa.Text, nullable=False),
    sa.Column("ts", sa.Double, nullable=False),
    sa.Column("action", sa.Text, nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Index("ix_rollout_events_route", "project_id", "route", "id"),
)

_MAX_LATENCIES = 5000


def ensure_tables(db: Database) -> None:
    """Create the rollout tables when missing.

    Args:
        db: the database.
    """
    with db.write() as conn:
        metadata.create_all(conn, checkfirst=True)


class RolloutRow:
    """A loaded rollout: state, policy and the service's extra info."""

    def __init__(self, state: RolloutState, policy: Policy, info: dict[str, Any]) -> None:
        self.state = state
        self.policy = policy
        self.info = info


def load(db: Database, project_id: int, route: str) -> RolloutRow | None:
    """Load a route's rollout.

    Args:
        db: the database.
        project_id: the project.
        route: the route.

    Returns:
        The row, or None when the route never had a rollout.
    """
    with db.read() as conn:
        row = conn.execute(
            sa.select(rollouts.c.state, rollouts.c.policy, rollouts.c.info).where(
                rollouts.c.project_id == project_id, rollouts.c.route == route
            )
        ).first()
    if row is None:
        return None
    return RolloutRow(
        RolloutState.from_json(json.loads(row.state)),
        Policy.from_json(json.loads(row.policy)),
        dict(json.loads(row.info)),
    )


def active(db: Database) -> list[tuple[int, str]]:
    """Return ``(project_id, route)`` of every rollout that may still change.

    Args:
        db: the database.

    Returns:
        The keys, in no particular order.
    """
    with db.read() as conn:
        rows = conn.execute(sa.select(rollouts.c.project_id, rollouts.c.route, rollouts.c.state))
        out = []
        for pid, route, state in rows:
            if json.loads(state)["status"] in ("canary", "paused"):
                out.append((int(pid), str(route)))
    return out


def save(db: Database, project_id: int, row: RolloutRow) -> None:
    """Insert or replace a rollout.

    Args:
        db: the database.
        project_id: the project.
        row: the rollout.
    """
    values = {
        "state": json.dumps(row.state.to_json()),
        "policy": json.dumps(row.policy.to_json()),
        "info": json.dumps(row.info),
        "updated_at": time.time(),
    }
    key = (rollouts.c.project_id == project_id, rollouts.c.route == row.state.route)
    with db.write() as conn:
        done = conn.execute(rollouts.update().where(*key).values(**values)).rowcount
        if not done:
            conn.execute(
                rollouts.insert().values(project_id=project_id, route=row.state.route, **values)
            )


def add_event(db: Database, project_id: int, event: dict[str, Any]) -> int:
    """Store one event.

    Args:
        db: the database.
        project_id: the project.
        event: the event (``route``, ``ts`` and ``action`` are required).

    Returns:
        The event's id.
    """
    with db.write() as conn:
        result = conn.execute(
            rollout_events.insert().values(
                project_id=project_id,
                route=event["route"],
                ts=float(event["ts"]),
                action=str(event["action"]),
                body=json.dumps(event, default=str),
            )
        )
        key = result.inserted_primary_key
    return int(key[0]) if key else 0


def list_events(
    db: Database, project_id: int, route: str, limit: int = 200
) -> list[dict[str, Any]]:
    """Return a route's latest events, oldest first.

    Args:
        db: the database.
        project_id: the project.
        route: the route.
        limit: most events returned.

    Returns:
        The events, each with its ``id``.
    """
    query = (
        sa.select(rollout_events.c.id, rollout_events.c.body)
        .where(rollout_events.c.project_id == project_id, rollout_events.c.route == route)
        .order_by(rollout_events.c.id.desc())
        .limit(limit)
    )
    with db.read() as conn:
        rows = list(conn.execute(query))
    return [{"id": int(i), **json.loads(b)} for i, b in reversed(rows)]


def evidence(
    db: Database, project_id: int, route: str, control: str, variant: str, since: float
) -> Evidence:
    """Aggregate the two arms of a route from stored calls and their feedback.

    A variant call that fell back to control counts as a variant error, and its
    feedback is not credited to the variant (the user saw control's answer).
    Feedback counts ``success`` and ``failure``; ``neutral`` is no verdict.

    Args:
        db: the database.
        project_id: the project.
        route: the route.
        control: the control arm's name.
        variant: the variant's name.
        since: only calls at or after this time (the canary's start).

    Returns:
        The evidence.
    """
    table = _prices.effective_table(db, project_id)
    query = sa.select(
        calls.c.variant,
        calls.c.is_error,
        calls.c.fallback,
        calls.c.latency_ms,
        calls.c.input_tokens,
        calls.c.output_tokens,
        sa.func.coalesce(calls.c.served_model, calls.c.requested_model).label("model"),
        calls.c.outcome,
    ).where(
        calls.c.project_id == project_id,
        calls.c.route == route,
        calls.c.ts >= since,
        calls.c.variant.in_([control, variant]),
    )
    acc = {control: _Acc(), variant: _Acc()}
    with db.read() as conn:
        for r in conn.execute(query):
            acc[str(r.variant)].add(r, table)
    return Evidence(control=acc[control].stats(), variant=acc[variant].stats())


class _Acc:
    def __init__(self) -> None:
        self.calls = self.errors = self.feedback = self.successes = self.cost_n = 0
        self.cost_sum = self.cost_sumsq = 0.0
        self.latencies: list[float] = []

    def add(self, r: Any, table: dict[str, tuple[float, float]]) -> None:
        self.calls += 1
        failed = bool(r.is_error) or bool(r.fallback)
        if failed:
            self.errors += 1
            return
        if r.outcome in ("success", "failure"):
            self.feedback += 1
            self.successes += r.outcome == "success"
        if r.latency_ms is not None:
            self.latencies.append(float(r.latency_ms))
        price = _prices.lookup(table, r.model)
        if price is not None and (r.input_tokens is not None or r.output_tokens is not None):
            cost = ((r.input_tokens or 0) * price[0] + (r.output_tokens or 0) * price[1]) / 1e6
            self.cost_n += 1
            self.cost_sum += cost
            self.cost_sumsq += cost * cost

    def stats(self) -> ArmStats:
        return ArmStats(
            calls=self.calls,
            errors=self.errors,
            feedback=self.feedback,
            successes=float(self.successes),
            cost_n=self.cost_n,
            cost_sum=self.cost_sum,
            cost_sumsq=self.cost_sumsq,
            latencies_ms=tuple(self.latencies[-_MAX_LATENCIES:]),
        )
