"""Persistence of rollouts: typed state, events and the failures kept for the next dataset.

The tables (``rollouts``, ``rollout_events``, ``rollout_failures``) are part of the
versioned schema (:mod:`.schema`, created and upgraded by :mod:`.migrations`).
A rollout is a :class:`RolloutRow`: the engine's :class:`RolloutState`, the policy
and the service's own fields, one column each.  ``rollout_failures`` keeps the
inputs a rolled-back model failed on, for the next dataset.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from logos_shift.server.rollout.types import Baseline, Policy, RolloutState, Status

from . import aggregates
from .db import Database
from .schema import rollout_events, rollout_failures, rollouts

__all__ = [
    "RolloutRow",
    "active",
    "add_event",
    "add_failures",
    "failure_call_ids",
    "failure_hashes",
    "list_events",
    "list_failures",
    "load",
    "lock_state",
    "save",
]


@dataclass
class RolloutRow:
    """A route's rollout as stored: the engine's state plus what the service keeps.

    Attributes:
        state: the engine's state.
        policy: the rollout policy.
        dataset: the dataset the model was trained on (the route's ``match``).
        dataset_counts: the dataset builder's counts.
        base_model: the model fine-tuned.
        backend: the fine-tuning backend's name.
        backend_url: a project's own backend URL (redacted), None for a configured one.
        webhook_url: where every event is POSTed.
        webhook_secret: signs the webhook's deliveries (never shown after the launch).
        job: the job's last snapshot (``JobInfo.to_json``).
        train_file: the uploaded training file's id.
        validation_file: the uploaded validation file's id.
        variant_name: the variant's arm name in the route (``ft-…``).
        canary_since: when the canary began (evidence counts calls from here).
        rolled_back_variant: the arm name of the variant when it was rolled back.
        kept_failures: failed calls kept at the rollback.
        test_split: held-out ``{input, expected}`` examples for the offline evaluation.
        generation: the route's rollout number (1, 2, …): evidence is kept per generation.
    """

    state: RolloutState
    policy: Policy
    dataset: str
    dataset_counts: dict[str, Any] = field(default_factory=dict)
    base_model: str | None = None
    backend: str | None = None
    backend_url: str | None = None
    webhook_url: str | None = None
    webhook_secret: str | None = None
    job: dict[str, Any] | None = None
    train_file: str | None = None
    validation_file: str | None = None
    variant_name: str | None = None
    canary_since: float | None = None
    rolled_back_variant: str | None = None
    kept_failures: int | None = None
    test_split: list[dict[str, Any]] = field(default_factory=list)
    generation: int = 0

    def public(self) -> dict[str, Any]:
        """Return what ``rollout status`` shows of the service's fields (no secret, no test split).

        Returns:
            ``{"dataset", "dataset_counts", "base_model", "backend", "backend_url",
            "webhook_url", "control_model", "job", "files", "variant_name",
            "canary_since", "rolled_back_variant", "kept_failures"}`` (absent when unset).
        """
        out: dict[str, Any] = {
            "dataset": self.dataset,
            "dataset_counts": self.dataset_counts,
            "base_model": self.base_model,
            "backend": self.backend,
            "backend_url": self.backend_url,
            "webhook_url": self.webhook_url,
            "control_model": self.state.control_model,
            "job": self.job,
            "files": {"train": self.train_file, "validation": self.validation_file}
            if self.train_file
            else None,
            "variant_name": self.variant_name,
            "canary_since": self.canary_since,
            "rolled_back_variant": self.rolled_back_variant,
            "kept_failures": self.kept_failures,
        }
        return {k: v for k, v in out.items() if v is not None}


def _from_db(r: Any) -> RolloutRow:
    state = RolloutState(
        route=str(r.route),
        status=Status(r.status),
        stages=tuple(float(x) for x in json.loads(r.stages)),
        stage_index=int(r.stage_index),
        control_model=r.control_model,
        variant_model=r.variant_model,
        job_id=r.job_id,
        since=float(r.since),
        paused_from=Status(r.paused_from) if r.paused_from else None,
        reason=str(r.reason),
        version=int(r.version),
        base=Baseline(
            int(r.base_variant_feedback),
            int(r.base_control_feedback),
            int(r.base_variant_calls),
            int(r.base_control_calls),
        ),
    )
    return RolloutRow(
        state=state,
        policy=Policy.from_json(json.loads(r.policy)),
        dataset=str(r.dataset),
        dataset_counts=dict(json.loads(r.dataset_counts)),
        base_model=r.base_model,
        backend=r.backend,
        backend_url=r.backend_url,
        webhook_url=r.webhook_url,
        webhook_secret=r.webhook_secret,
        job=json.loads(r.job) if r.job is not None else None,
        train_file=r.train_file,
        validation_file=r.validation_file,
        variant_name=r.variant_name,
        canary_since=None if r.canary_since is None else float(r.canary_since),
        rolled_back_variant=r.rolled_back_variant,
        kept_failures=None if r.kept_failures is None else int(r.kept_failures),
        test_split=list(json.loads(r.test_split)),
        generation=int(r.generation),
    )


def _to_db(row: RolloutRow) -> dict[str, Any]:
    st = row.state
    return {
        "status": st.status.value,
        "stages": json.dumps(list(st.stages)),
        "stage_index": st.stage_index,
        "control_model": st.control_model,
        "variant_model": st.variant_model,
        "job_id": st.job_id,
        "since": st.since,
        "paused_from": st.paused_from.value if st.paused_from else None,
        "reason": st.reason,
        "version": st.version,
        "base_variant_feedback": st.base.variant_feedback,
        "base_control_feedback": st.base.control_feedback,
        "base_variant_calls": st.base.variant_calls,
        "base_control_calls": st.base.control_calls,
        "policy": json.dumps(row.policy.to_json()),
        "dataset": row.dataset,
        "dataset_counts": json.dumps(row.dataset_counts),
        "base_model": row.base_model,
        "backend": row.backend,
        "backend_url": row.backend_url,
        "webhook_url": row.webhook_url,
        "webhook_secret": row.webhook_secret,
        "job": json.dumps(row.job) if row.job is not None else None,
        "train_file": row.train_file,
        "validation_file": row.validation_file,
        "variant_name": row.variant_name,
        "canary_since": row.canary_since,
        "rolled_back_variant": row.rolled_back_variant,
        "kept_failures": row.kept_failures,
        "test_split": json.dumps(row.test_split, default=str),
        "updated_at": time.time(),
    }


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
        key = (rollouts.c.project_id == project_id, rollouts.c.route == route)
        row = conn.execute(sa.select(rollouts).where(*key)).first()
    return None if row is None else _from_db(row)


def active(db: Database, statuses: tuple[str, ...] = ("canary", "paused")) -> list[tuple[int, str]]:
    """Return ``(project_id, route)`` of every rollout in one of ``statuses``.

    Args:
        db: the database.
        statuses: the statuses (default: those evidence may still change).

    Returns:
        The keys, in no particular order.
    """
    query = sa.select(rollouts.c.project_id, rollouts.c.route).where(
        rollouts.c.status.in_(statuses)
    )
    with db.read() as conn:
        return [(int(pid), str(route)) for pid, route in conn.execute(query)]


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
        key = (rollouts.c.project_id == project_id, rollouts.c.route == route)
        row = conn.execute(sa.select(rollouts).where(*key).with_for_update()).first()
    return None if row is None else _from_db(row).state


def save(db: Database, project_id: int, row: RolloutRow, conn: Connection | None = None) -> None:
    """Insert or replace a rollout.

    A row whose ``generation`` is 0 is a new rollout of the route: it takes the
    next generation number (``row.generation`` is set).

    Args:
        db: the database.
        project_id: the project.
        row: the rollout.
        conn: a write transaction to join (default: one of its own).
    """
    if conn is None:
        with db.write() as own:
            save(db, project_id, row, own)
        return
    key = (rollouts.c.project_id == project_id, rollouts.c.route == row.state.route)
    if row.generation == 0:
        last = conn.execute(sa.select(rollouts.c.generation).where(*key)).scalar()
        row.generation = int(last or 0) + 1
    values = {**_to_db(row), "generation": row.generation}
    done = conn.execute(rollouts.update().where(*key).values(**values)).rowcount
    if not done:
        conn.execute(
            rollouts.insert().values(project_id=project_id, route=row.state.route, **values)
        )
    if row.canary_since is not None and row.variant_name is not None:
        # The times the evidence is read from start windows of the aggregates.
        starts = {row.canary_since, row.state.since + row.policy.srm_grace_s}
        aggregates.open_windows(db, conn, project_id, row.state.route, row.generation, starts)


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
