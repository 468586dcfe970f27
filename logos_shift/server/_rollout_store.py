"""Persistence of rollouts: state, events, and the evidence read from stored calls.

Three tables of its own (``rollouts``, ``rollout_events``, ``rollout_failures``)
created with ``checkfirst`` next to the server's schema; the evidence comes
from the server's ``calls`` table and price table.  ``rollout_failures`` keeps
the inputs a rolled-back model failed on, for the next dataset.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from . import _prices
from ._dataset_builder import prompt_hash
from ._db import Database
from ._rollout_types import ArmStats, Evidence, Policy, RolloutState
from ._schema import calls

__all__ = [
    "RolloutRow",
    "add_event",
    "answered_hashes",
    "ensure_tables",
    "evidence",
    "failure_hashes",
    "keep_failures",
    "list_events",
    "list_failures",
    "load",
    "save",
]

logger = logging.getLogger("logos_shift.server.rollout")

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
    db: Database,
    project_id: int,
    route: str,
    control: str,
    variant: str,
    since: float,
    stage_from: float | None = None,
    unit_key: str | None = "user_id",
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
        stage_from: also count each arm's calls made at or after this time
            (``Evidence.stage_calls``), and its distinct units plus unit-less
            calls (``Evidence.stage_units``), for the sample-ratio check.
        unit_key: the route's ``assignment.unit`` metadata key (None: count
            calls only).

    Returns:
        The evidence.
    """
    table = _prices.effective_table(db, project_id)
    unit = _unit_expr(db, unit_key) if stage_from is not None else None
    try:
        return _scan(db, table, project_id, route, control, variant, since, stage_from, unit)
    except sa.exc.DBAPIError:
        if unit is None:
            raise
        # A record the database's JSON parser refuses must not stop the guardrails:
        # the sample-ratio check falls back to counting calls.
        logger.warning("route %s: units unreadable, SRM check counts calls", route, exc_info=True)
        return _scan(db, table, project_id, route, control, variant, since, stage_from, None)


def _scan(
    db: Database,
    table: dict[str, tuple[float, float]],
    project_id: int,
    route: str,
    control: str,
    variant: str,
    since: float,
    stage_from: float | None,
    unit: sa.ColumnElement[Any] | None,
) -> Evidence:
    unit_col = (
        sa.null()
        if unit is None or stage_from is None
        else sa.case((calls.c.ts >= stage_from, unit), else_=sa.null())
    )
    query = sa.select(
        calls.c.variant,
        calls.c.ts,
        calls.c.is_error,
        calls.c.fallback,
        calls.c.latency_ms,
        calls.c.input_tokens,
        calls.c.output_tokens,
        sa.func.coalesce(calls.c.served_model, calls.c.requested_model).label("model"),
        calls.c.outcome,
        unit_col.label("unit"),
    ).where(
        calls.c.project_id == project_id,
        calls.c.route == route,
        calls.c.ts >= since,
        calls.c.variant.in_([control, variant]),
    )
    acc = {control: _Acc(), variant: _Acc()}
    in_stage = {control: 0, variant: 0}
    # Per arm: distinct units, and calls without one (each its own random draw).
    units: dict[str, set[str]] = {control: set(), variant: set()}
    unitless = {control: 0, variant: 0}
    with db.read() as conn:
        for r in conn.execute(query):
            arm = str(r.variant)
            acc[arm].add(r, table)
            if stage_from is not None and r.ts >= stage_from:
                in_stage[arm] += 1
                if r.unit is None or r.unit == "":
                    unitless[arm] += 1
                else:
                    units[arm].add(str(r.unit))
    return Evidence(
        control=acc[control].stats(),
        variant=acc[variant].stats(),
        stage_calls=None if stage_from is None else (in_stage[variant], in_stage[control]),
        stage_units=None
        if stage_from is None or unit is None
        else (len(units[variant]) + unitless[variant], len(units[control]) + unitless[control]),
    )


def _unit_expr(db: Database, key: str | None) -> sa.ColumnElement[Any] | None:
    """Return the SQL expression reading ``record.metadata[key]`` as text, or None.

    A per-database JSON expression rather than a ``unit`` column filled at
    ingest: the unit key is a route setting (``assignment.unit``) that ingest
    does not know and an admin may change, and the record is already stored.
    It is evaluated only for the calls of the current stage after the grace
    period (a ``CASE`` on ``ts``), on a scan this function makes anyway; the
    per-route index bounds the rows read.  Cost measured for 50,000 stage calls
    of ~3.4 KB records: the evidence read goes from 0.40 to 0.59 s on SQLite and
    from 0.39 to 1.14 s on PostgreSQL (the ``json`` cast parses whole records;
    ``json`` rather than ``jsonb``: cheaper to build, and it accepts escaped NULs).
    A nullable ``unit`` column filled at ingest is the step to take if stages
    grow much larger.
    """
    if not key:
        return None
    if db.dialect == "postgresql":
        doc = sa.cast(calls.c.record, postgresql.JSON)
        return sa.func.json_extract_path_text(doc, "metadata", key)
    if '"' in key:  # not expressible as a quoted SQLite JSON path label
        return None
    return sa.func.json_extract(calls.c.record, f'$.metadata."{key}"')


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


def keep_failures(
    db: Database, project_id: int, route: str, variant: str, variant_model: str, since: float
) -> int:
    """Keep the calls a rolled-back variant failed, for the next dataset.

    A call is kept when its latest feedback is ``failure``, when it failed, or
    when it fell back to control.  Its input (not its answer, which was bad or
    missing) is stored with the input hash the dataset builder matches on.

    Args:
        db: the database.
        project_id: the project.
        route: the route.
        variant: the variant's name in the route (as the calls record it).
        variant_model: the rolled-back model.
        since: the canary's start (earlier calls are not the variant's).

    Returns:
        How many calls were newly kept.
    """
    query = sa.select(
        calls.c.id, calls.c.ts, calls.c.dataset, calls.c.is_error, calls.c.fallback, calls.c.record
    ).where(
        calls.c.project_id == project_id,
        calls.c.route == route,
        calls.c.variant == variant,
        calls.c.ts >= since,
        sa.or_(calls.c.is_error, calls.c.fallback, calls.c.outcome == "failure"),
    )
    now = time.time()
    with db.read() as conn:
        found = list(conn.execute(query))
        ids = [str(r.id) for r in found]
        have = {
            str(x)
            for chunk in range(0, len(ids), 500)
            for x in conn.execute(
                sa.select(rollout_failures.c.call_id).where(
                    rollout_failures.c.project_id == project_id,
                    rollout_failures.c.call_id.in_(ids[chunk : chunk + 500]),
                )
            ).scalars()
        }
    rows = []
    for r in found:
        if str(r.id) in have:
            continue
        record = json.loads(r.record)
        reason = "error" if r.is_error else "fallback" if r.fallback else "failure"
        rows.append(
            {
                "project_id": project_id,
                "dataset": str(r.dataset),
                "route": route,
                "variant_model": variant_model,
                "call_id": str(r.id),
                "ts": float(r.ts),
                "reason": reason,
                "input_hash": prompt_hash(record),
                "input": json.dumps(
                    {k: record.get(k) for k in ("source", "provider", "input")}, default=str
                ),
                "kept_at": now,
            }
        )
    if rows:
        with db.write() as conn:
            conn.execute(rollout_failures.insert(), rows)
    return len(rows)


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


def answered_hashes(db: Database, project_id: int, dataset: str, wanted: set[str]) -> set[str]:
    """Return which of ``wanted`` input hashes a call with success feedback answers.

    Args:
        db: the database.
        project_id: the project.
        dataset: the dataset.
        wanted: input hashes (:func:`~._dataset_builder.prompt_hash`).

    Returns:
        The subset of ``wanted`` with at least one successful, error-free call.
    """
    if not wanted:
        return set()
    query = sa.select(calls.c.record).where(
        calls.c.project_id == project_id,
        calls.c.dataset == dataset,
        calls.c.outcome == "success",
        sa.not_(calls.c.is_error),
    )
    found: set[str] = set()
    with db.read() as conn:
        for (record,) in conn.execute(query):
            h = prompt_hash(json.loads(record))
            if h in wanted:
                found.add(h)
                if found == wanted:
                    break
    return found
