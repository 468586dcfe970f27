"""What the clients then fetch: the route config rewritten to follow a rollout's state."""

from __future__ import annotations

from typing import Any

from logos_shift.server.store import routes
from logos_shift.server.store.db import Database
from logos_shift.server.store.rollouts import RolloutRow

from . import engine
from .types import Status

__all__ = ["serving_model", "sync_route"]


def sync_route(db: Database, project_id: int, row: RolloutRow, d: engine.Decision) -> None:
    """Rewrite the route the clients fetch so it follows the rollout's state.

    Args:
        db: the database.
        project_id: the project.
        row: the rollout after the transition.
        d: the transition (a rollback re-draws the buckets).
    """
    st = row.state
    if st.variant_model is None or st.status in (Status.FAILED, Status.TRAINING):
        return
    name = st.route
    route = routes.get_route(db, project_id, name) or {
        "match": {"dataset": row.dataset},
        "control": {"name": "control", "model": st.control_model},
        "variants": [],
        "assignment": {"unit": "user_id", "seed": name},
    }
    # The rollout owns the route's variants: exactly the model under test, so a
    # previous (promoted or rolled-back) variant never shares its traffic.
    route["variants"] = [
        {"name": str(row.variant_name), "model": st.variant_model, "fallback": True}
    ]
    if d.action in ("start_canary", "start_eval") and st.control_model:
        route["control"] = {**route["control"], "model": st.control_model}
    hold = row.policy.holdout_pct
    pct = min(engine.variant_pct(st), 1.0 - hold)
    route["rollout"] = {
        "variant_pct": pct,
        "holdout_pct": hold,
        "state": st.status.value,
        "stage": st.stage_index,
        "stages": list(st.stages),
    }
    if st.status == Status.ROLLED_BACK and d.previous.status != Status.ROLLED_BACK:
        a = dict(route.get("assignment") or {})
        a["bucket_version"] = int(a.get("bucket_version") or 1) + 1
        route["assignment"] = a
    routes.put_route(db, project_id, name, route)


def serving_model(route: dict[str, Any] | None) -> str | None:
    """Return the model a route serves its traffic with now (what a new rollout's control is).

    After a promotion that is the promoted variant's model; otherwise the
    control's.  A rollout that failed before its canary never touched the route,
    so the route still says what it serves.

    Args:
        route: the route's JSON (None: no route).

    Returns:
        The model, or None when there is no route (or it names no model).
    """
    if route is None:
        return None
    variants = route.get("variants") or []
    if (route.get("rollout") or {}).get("state") == Status.PROMOTED.value and variants:
        model = variants[0].get("model")
    else:
        model = (route.get("control") or {}).get("model")
    return str(model) if model else None
