"""Helpers of the rollout service: backends, dataset reads, route config, webhooks."""

from __future__ import annotations

import collections
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests

from . import _finetune, _queries, _rollout, _rollout_store, _routes_store
from ._db import Database
from ._rollout_types import Status

__all__ = [
    "BackendFactory",
    "FinetuneRequest",
    "dataset_calls",
    "default_backend",
    "post_webhook",
    "sync_route",
]

logger = logging.getLogger("logos_shift.server.rollout")

BackendFactory = Callable[[str | None, str | None], _finetune.FineTuneBackend]


def default_backend(url: str | None, key: str | None) -> _finetune.FineTuneBackend:
    """Build the OpenAI-compatible backend for ``url``.

    Args:
        url: the API root (None = OpenAI).
        key: the key (default: ``$LOGOS_SHIFT_FINETUNE_API_KEY`` or ``$OPENAI_API_KEY``).

    Returns:
        The backend.

    Raises:
        FineTuneError: the client cannot be created.
    """
    key = key or os.environ.get("LOGOS_SHIFT_FINETUNE_API_KEY") or os.environ.get("OPENAI_API_KEY")
    # Self-hosted compatible backends often need no key; a real provider answers 401,
    # which surfaces as a clear FineTuneError.
    return _finetune.OpenAICompatibleBackend(base_url=url, api_key=key or "not-set")


@dataclass(frozen=True)
class FinetuneRequest:
    """What ``POST /v1/finetune`` asks for (see the endpoint for each field)."""

    dataset: str
    base_model: str
    route: str | None = None
    control_model: str | None = None
    backend_url: str | None = None
    backend_api_key: str | None = None
    min_score: float | None = None
    since: float | None = None
    until: float | None = None
    policy: dict[str, Any] = field(default_factory=dict)
    webhook_url: str | None = None
    seed: int | None = None


def dataset_calls(
    db: Database, project_id: int, req: FinetuneRequest
) -> tuple[list[tuple[dict[str, Any], dict[str, Any]]], collections.Counter[str]]:
    """Read a dataset's calls with their feedback summary, page by page.

    Args:
        db: the database.
        project_id: the project.
        req: the request (dataset and time window).

    Returns:
        ``([(record, {"outcome", "score", "count"})], requested-model counts)``.
    """
    out: list[tuple[dict[str, Any], dict[str, Any]]] = []
    models: collections.Counter[str] = collections.Counter()
    f = _queries.CallFilter(dataset=req.dataset, since=req.since, until=req.until)
    cursor: str | None = None
    while True:
        page = _queries.list_calls(db, project_id, f, cursor, 1000)
        for item in page["calls"]:
            out.append((item["record"], item["feedback"]))
            if item["record"].get("requested_model"):
                models[str(item["record"]["requested_model"])] += 1
        cursor = page["next_cursor"]
        if not cursor:
            return out, models


def sync_route(
    db: Database, project_id: int, row: _rollout_store.RolloutRow, d: _rollout.Decision
) -> None:
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
    route = _routes_store.get_route(db, project_id, name) or {
        "match": {"dataset": row.info["dataset"]},
        "control": {"name": "control", "model": row.info.get("control_model")},
        "variants": [],
        "assignment": {"unit": "user_id", "seed": name},
    }
    # The rollout owns the route's variants: exactly the model under test, so a
    # previous (promoted or rolled-back) variant never shares its traffic.
    route["variants"] = [
        {"name": str(row.info["variant_name"]), "model": st.variant_model, "fallback": True}
    ]
    if d.action in ("start_canary", "start_eval") and row.info.get("control_model"):
        route["control"] = {**route["control"], "model": row.info["control_model"]}
    hold = row.policy.holdout_pct
    pct = min(_rollout.variant_pct(st), 1.0 - hold)
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
    _routes_store.put_route(db, project_id, name, route)


def post_webhook(
    url: str,
    event: dict[str, Any],
    retries: int,
    backoff_s: float,
    stop: threading.Event,
    log: collections.deque[dict[str, Any]],
) -> None:
    """POST an event to a webhook, retrying with doubling delays.

    Args:
        url: the webhook URL.
        event: the JSON event.
        retries: attempts after the first.
        backoff_s: first delay between attempts.
        stop: set to give up early (shutdown).
        log: gets one ``{"url", "event", "ok", "attempts"}`` entry per event.
    """
    delay = backoff_s
    for attempt in range(1 + retries):
        try:
            resp = requests.post(url, json=event, timeout=5.0)
            resp.close()
            if resp.status_code < 300:
                log.append({"url": url, "event": event["id"], "ok": True, "attempts": attempt + 1})
                return
            why = f"HTTP {resp.status_code}"
        except requests.RequestException as exc:
            why = str(exc)
        logger.warning("webhook %s attempt %d failed: %s", url, attempt + 1, why)
        if attempt < retries and stop.wait(delay):
            break
        delay *= 2
    log.append({"url": url, "event": event["id"], "ok": False, "attempts": 1 + retries})
