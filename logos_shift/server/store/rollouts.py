"""Persistence of rollouts: state, events and the failures kept for the next dataset.

Three tables of its own (``rollouts``, ``rollout_events``, ``rollout_failures``)
created with ``checkfirst`` next to the server's schema.  ``rollout_failures``
keeps the inputs a rolled-back model failed on, for the next dataset.
"""

from __future__ import annotations

import json
import time
from typing import Any

import sqlalchemy as sa

from logos_shift.server.rollout.types import Policy, RolloutState

from .db import Database

__all__ = [
    "RolloutRow",
    "add_event",
    "add_failures",
    "ensure_tables",
    "failure_call_ids",
    "failure_hashes",
    "list_events",
    "list_failures",
    "load",
    "lock_state",
    "save",
]

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

rollout_failures = sa.Table(
    "rollout_failures",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("project_id", sa.Integer, nullable=False),
    sa.Column("dataset", sa.Text, nullable=False),
    sa.Column("route", sa.Text, nullable=False),
    sa.Column("variant_model", sa.Text, nullable=False),
    sa.Column("call_id", sa.Text, nullable=False),
    sa.Column("ts", sa.Double, nullable=False),
    # "failure" (feedback), "error" (the call failed) or "fallback" (control answered).
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("input_hash", sa.Text),
    sa.Column("input", sa.Text, nullable=False),
    sa.Column("kept_at", sa.Double, nullable=False),
    sa.UniqueConstraint("project_id", "call_id", name="uq_rollout_failures_call"),
    sa.Index("ix_rollout_failures_dataset", "project_id", "dataset"),
)


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


def active(db: Database, statuses: tuple[str, ...] = ("canary", "paused")) -> list[tuple[int, str]]:
    """Return ``(project_id, route)`` of every rollout in one of ``statuses``.

    Args:
        db: the database.
        statuses: the statuses (default: those evidence may still change).

    Returns:
        The keys, in no particular order.
    """
    with db.read() as conn:
        rows = conn.execute(sa.select(rollouts.c.project_id, rollouts.c.route, rollouts.c.state))
        out = []
        for pid, route, state in rows:
            if json.loads(state)["status"] in statuses:
                out.append((int(pid), str(route)))
    return out


def lock_state(db: Database, project_id: int, route: str) -> RolloutState | None:
    """Read a rollout's state in the current write, locking its row until the commit.

    Args:
        db: the database (called inside ``db.write()``, whose transaction it joins).
        project_id: the project.
        route: the route.

    Returns:
        The state, or None when the route has no rollout yet.
    """
    with db.write() as conn:
        text = conn.execute(
            sa.select(rollouts.c.state)
            .where(rollouts.c.project_id == project_id, rollouts.c.route == route)
            .with_for_update()
        ).scalar()
    return None if text is None else RolloutState.from_json(json.loads(text))


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


def failure_call_ids(db: Database, project_id: int, call_ids: list[str]) -> set[str]:
    """Return which of ``call_ids`` are kept as failures already.

    Args:
        db: the database.
        project_id: the project.
        call_ids: candidate call ids.

    Returns:
        The subset already kept.
    """
    have: set[str] = set()
    with db.read() as conn:
        for i in range(0, len(call_ids), 500):
            query = sa.select(rollout_failures.c.call_id).where(
                rollout_failures.c.project_id == project_id,
                rollout_failures.c.call_id.in_(call_ids[i : i + 500]),
            )
            have.update(str(x) for x in conn.execute(query).scalars())
    return have


def add_failures(db: Database, rows: list[dict[str, Any]]) -> None:
    """Store kept failures (rows of ``rollout_failures`` without ``id``).

    Args:
        db: the database.
        rows: the rows.
    """
    if rows:
        with db.write() as conn:
            conn.execute(rollout_failures.insert(), rows)


def list_failures(
    db: Database, project_id: int, dataset: str | None = None, route: str | None = None
) -> list[dict[str, Any]]:
    """Return kept failures of rolled-back models, oldest first.

    Args:
        db: the database.
        project_id: the project.
        dataset: only this dataset's.
        route: only this route's.

    Returns:
        ``{"call_id", "dataset", "route", "variant_model", "ts", "reason",
        "input_hash", "source", "provider", "input"}`` per kept call.
    """
    t = rollout_failures
    query = sa.select(t).where(t.c.project_id == project_id).order_by(t.c.id)
    if dataset is not None:
        query = query.where(t.c.dataset == dataset)
    if route is not None:
        query = query.where(t.c.route == route)
    with db.read() as conn:
        rows = list(conn.execute(query).mappings())
    out = []
    for r in rows:
        item = {
            k: r[k]
            for k in ("call_id", "dataset", "route", "variant_model", "ts", "reason", "input_hash")
        }
        out.append({**item, **json.loads(r["input"])})
    return out


def failure_hashes(db: Database, project_id: int, dataset: str) -> set[str]:
    """Return the input hashes rolled-back models failed on in a dataset.

    Args:
        db: the database.
        project_id: the project.
        dataset: the dataset.

    Returns:
        The hashes (inputs that are not chat conversations are left out).
    """
    t = rollout_failures
    query = sa.select(t.c.input_hash).where(
        t.c.project_id == project_id, t.c.dataset == dataset, t.c.input_hash.is_not(None)
    )
    with db.read() as conn:
        return {str(h) for h in conn.execute(query).scalars()}
