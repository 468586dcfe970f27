"""Closing the loop: the calls a rolled-back model failed on, kept for the next dataset.

A rolled-back variant's call is kept when its latest feedback is ``failure``,
when it failed, or when it fell back to control.  Its input (not its answer,
which was bad or missing) is stored with the input hash the dataset builder
matches on, so the next fine-tune of the dataset up-weights good answers to it.
"""

from __future__ import annotations

import json
import time
from typing import Any

from logos_shift.server.finetune.dataset import prompt_hash
from logos_shift.server.store import queries, rollouts
from logos_shift.server.store.db import Database
from logos_shift.server.store.schema import calls

__all__ = ["answered_hashes", "keep_failures"]


def keep_failures(
    db: Database, project_id: int, route: str, variant: str, variant_model: str, since: float
) -> int:
    """Keep the calls a rolled-back variant failed, for the next dataset (idempotent).

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
    columns = [calls.c.id, calls.c.ts, calls.c.dataset, calls.c.is_error, calls.c.fallback,
               calls.c.record]  # fmt: skip
    base = queries.CallFilter(route=route, variant=variant, since=since)
    found = [
        *queries.scan(
            db, project_id, queries.CallFilter(**{**vars(base), "failed": True}), columns
        ),
        *queries.scan(
            db,
            project_id,
            queries.CallFilter(**{**vars(base), "failed": False, "outcome": "failure"}),
            columns,
        ),
    ]
    have = rollouts.failure_call_ids(db, project_id, [str(r.id) for r in found])
    now = time.time()
    rows: list[dict[str, Any]] = []
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
    rollouts.add_failures(db, rows)
    return len(rows)


def answered_hashes(db: Database, project_id: int, dataset: str, wanted: set[str]) -> set[str]:
    """Return which of ``wanted`` input hashes a call with success feedback answers.

    Args:
        db: the database.
        project_id: the project.
        dataset: the dataset.
        wanted: input hashes (:func:`..finetune.dataset.prompt_hash`).

    Returns:
        The subset of ``wanted`` with at least one successful, error-free call.
    """
    if not wanted:
        return set()
    f = queries.CallFilter(dataset=dataset, outcome="success")
    found: set[str] = set()
    for r in queries.scan(db, project_id, f, [calls.c.is_error, calls.c.record]):
        if r.is_error:
            continue
        h = prompt_hash(json.loads(r.record))
        if h in wanted:
            found.add(h)
            if found == wanted:
                break
    return found
