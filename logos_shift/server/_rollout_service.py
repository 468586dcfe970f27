"""The rollout service: fine-tune jobs, rollout transitions, route config, notifications.

Glue between the pure engine (:mod:`._rollout`), the dataset builder, the
fine-tuning backend and the server's storage.  Every transition is stored as an
event, logged, and POSTed to the rollout's webhook URL (with retries) on a
background thread; the route the clients fetch is rewritten on every transition,
so a rollback reaches each client within one config refresh.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests

from . import _dataset_builder, _finetune, _queries, _rollout, _rollout_store, _routes_store
from ._db import Database
from ._rollout_types import Evidence, Policy, Status, TransitionError

__all__ = ["FinetuneRequest", "RolloutService"]

logger = logging.getLogger("logos_shift.server.rollout")

BackendFactory = Callable[[str | None, str | None], _finetune.FineTuneBackend]


def _default_backend(url: str | None, key: str | None) -> _finetune.FineTuneBackend:
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


class RolloutService:
    """Runs fine-tunes and rollouts for one server database.

    Args:
        db: the server's database.
        backend_factory: builds a backend from ``(base_url, api_key)``.
        clock: wall clock (Unix seconds) used for state times.
        job_timeout_s: give up on a fine-tuning job after this long.
        poll_s: ``(initial, max)`` delay between job polls.
        webhook_retries: extra attempts after a failed webhook POST.
        webhook_backoff_s: first delay between webhook attempts (doubles).
    """

    def __init__(
        self,
        db: Database,
        backend_factory: BackendFactory = _default_backend,
        clock: Callable[[], float] = time.time,
        job_timeout_s: float = 24 * 3600.0,
        poll_s: tuple[float, float] = (0.5, 30.0),
        webhook_retries: int = 3,
        webhook_backoff_s: float = 0.5,
    ) -> None:
        self.db = db
        self.backend_factory = backend_factory
        self.clock = clock
        self.job_timeout_s = job_timeout_s
        self.poll_s = poll_s
        self.webhook_retries = webhook_retries
        self.webhook_backoff_s = webhook_backoff_s
        self._lock = threading.RLock()
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self.webhook_log: collections.deque[dict[str, Any]] = collections.deque(maxlen=100)
        _rollout_store.ensure_tables(db)

    # -- fine-tuning -------------------------------------------------------

    def start_finetune(self, project_id: int, req: FinetuneRequest) -> dict[str, Any]:
        """Build the dataset, upload it, create the job and start watching it.

        Args:
            project_id: the project.
            req: the request.

        Returns:
            ``{"route", "job", "dataset": counts, "warnings", "state"}``.

        Raises:
            TransitionError: the route already has a rollout in progress.
            ValueError: an invalid policy.
            DatasetError: the dataset is too small or malformed (no job created).
            FineTuneError: the backend failed (the route stays on control).
        """
        route = req.route or req.dataset
        policy = Policy.from_json(req.policy)
        with self._lock:
            old = _rollout_store.load(self.db, project_id, route)
            if old is not None and old.state.status in (
                Status.TRAINING,
                Status.EVALUATING,
                Status.CANARY,
                Status.PAUSED,
            ):
                raise TransitionError(
                    f"route {route!r} already has a rollout in progress ({old.state.status.value})"
                )
        records, models = self._dataset_calls(project_id, req)
        fb = {r["id"]: f for r, f in records}
        spec = _dataset_builder.DatasetSpec(
            min_score=req.min_score, since=req.since, until=req.until
        )
        ds = _dataset_builder.build((r for r, _ in records), fb, spec)
        control_model = req.control_model or (models.most_common(1)[0][0] if models else None)
        if req.control_model is None and old is not None and old.state.status == Status.PROMOTED:
            # The promoted model is what the route serves now: it becomes the control.
            control_model = old.state.variant_model
        now = self.clock()
        info: dict[str, Any] = {
            "dataset": req.dataset,
            "dataset_counts": ds.counts,
            "base_model": req.base_model,
            "backend_url": req.backend_url,
            "webhook_url": req.webhook_url,
            "control_model": control_model,
            "test": [{"input": t["input"], "expected": t["expected"]} for t in ds.test[:200]],
        }
        state = _rollout.start(route, control_model, now, policy)
        backend: _finetune.FineTuneBackend | None = None
        try:
            backend = self.backend_factory(req.backend_url, req.backend_api_key)
            train_id = backend.upload(ds.jsonl("train"), f"{route}-train.jsonl")
            val_id = (
                backend.upload(ds.jsonl("validation"), f"{route}-val.jsonl")
                if ds.validation
                else None
            )
            job = backend.create_job(
                req.base_model,
                train_id,
                val_id,
                suffix=route[:40],
                seed=req.seed,
                metadata={"route": route, "dataset": req.dataset},
            )
        except _finetune.FineTuneError as exc:
            if backend is not None:
                backend.close()
            row = _rollout_store.RolloutRow(state, policy, info)
            d = _rollout.on_training_finished(state, False, None, now, policy, str(exc))
            self._apply(project_id, row, d)
            raise
        info["job"] = job.to_json()
        info["variant_name"] = f"ft-{job.id[-8:]}"
        state = dataclasses.replace(state, job_id=job.id)
        row = _rollout_store.RolloutRow(state, policy, info)
        _rollout_store.save(self.db, project_id, row)
        self._event(
            project_id,
            row,
            {
                "route": route,
                "ts": now,
                "action": "training_started",
                "from": None,
                "to": "training",
                "reasons": [f"job {job.id} on {req.base_model}"],
                "numbers": {"dataset": ds.counts},
                "stage": 0,
                "variant_pct": 0.0,
            },
        )
        self._spawn(self._watch, project_id, route, backend, job.id)
        return {
            "route": route,
            "job": job.to_json(),
            "dataset": ds.counts,
            "warnings": ds.warnings,
            "state": state.to_json(),
        }

    def _dataset_calls(
        self, project_id: int, req: FinetuneRequest
    ) -> tuple[list[tuple[dict[str, Any], dict[str, Any]]], collections.Counter[str]]:
        out: list[tuple[dict[str, Any], dict[str, Any]]] = []
        models: collections.Counter[str] = collections.Counter()
        f = _queries.CallFilter(dataset=req.dataset, since=req.since, until=req.until)
        cursor: str | None = None
        while True:
            page = _queries.list_calls(self.db, project_id, f, cursor, 1000)
            for item in page["calls"]:
                out.append((item["record"], item["feedback"]))
                if item["record"].get("requested_model"):
                    models[str(item["record"]["requested_model"])] += 1
            cursor = page["next_cursor"]
            if not cursor:
                return out, models

    def _watch(
        self, project_id: int, route: str, backend: _finetune.FineTuneBackend, job_id: str
    ) -> None:
        last = {"status": ""}

        def progress(job: _finetune.JobInfo, events: list[_finetune.JobEvent]) -> None:
            if job.provider_status != last["status"]:
                last["status"] = job.provider_status
                logger.info("fine-tuning job %s is %s", job_id, job.provider_status)
                row = _rollout_store.load(self.db, project_id, route)
                if row is not None:
                    row.info["job"] = job.to_json()
                    _rollout_store.save(self.db, project_id, row)
                    _rollout_store.add_event(
                        self.db,
                        project_id,
                        {
                            "route": route,
                            "ts": self.clock(),
                            "action": "job_status",
                            "to": job.provider_status,
                            "reasons": [e.message for e in events],
                        },
                    )

        try:
            job = _finetune.wait(
                backend,
                job_id,
                self.job_timeout_s,
                progress,
                self.poll_s[0],
                self.poll_s[1],
                sleep=self._sleep,
            )
            ok, model, detail = (
                job.status == _finetune.JobStatus.SUCCEEDED,
                job.fine_tuned_model,
                (job.error or f"job ended {job.provider_status}"),
            )
        except _finetune.FineTuneError as exc:
            ok, model, detail = False, None, str(exc)
            if isinstance(exc, _finetune.FineTuneTimeout):
                try:
                    backend.cancel(job_id)
                except _finetune.FineTuneError:
                    pass
        finally:
            backend.close()
        if self._stop.is_set():
            return
        with self._lock:
            row = _rollout_store.load(self.db, project_id, route)
            if row is None or row.state.status != Status.TRAINING:
                return
            d = _rollout.on_training_finished(
                row.state, ok, model, self.clock(), row.policy, detail
            )
            self._apply(project_id, row, d)
        if d.state.status == Status.EVALUATING:
            self._offline_eval(project_id, route)

    def _offline_eval(self, project_id: int, route: str) -> None:
        from ._rollout_judge import judge_test_split

        row = _rollout_store.load(self.db, project_id, route)
        if row is None or row.state.variant_model is None:
            return
        passed, total = judge_test_split(
            row.info.get("backend_url"), row.state.variant_model, row.info.get("test", [])
        )
        with self._lock:
            row = _rollout_store.load(self.db, project_id, route)
            if row is not None and row.state.status == Status.EVALUATING:
                d = _rollout.on_offline_eval(row.state, passed, total, self.clock(), row.policy)
                self._apply(project_id, row, d)

    # -- rollout -------------------------------------------------------------

    def _evidence(self, project_id: int, row: _rollout_store.RolloutRow) -> Evidence:
        route = _routes_store.get_route(self.db, project_id, row.state.route)
        if route is None or "canary_since" not in row.info:
            return Evidence()
        return _rollout_store.evidence(
            self.db,
            project_id,
            row.state.route,
            str(route["control"]["name"]),
            str(row.info["variant_name"]),
            float(row.info["canary_since"]),
        )

    def evaluate(self, project_id: int, route: str) -> _rollout.Decision:
        """Evaluate a route's rollout on all evidence so far and apply the decision.

        Args:
            project_id: the project.
            route: the route.

        Returns:
            The decision (``hold`` when nothing changed).

        Raises:
            KeyError: the route has no rollout.
        """
        with self._lock:
            row = self._require(project_id, route)
            d = _rollout.evaluate(
                row.state, row.policy, self._evidence(project_id, row), self.clock()
            )
            if d.changed:
                self._apply(project_id, row, d)
            return d

    def evaluate_all(self, project_id: int | None = None) -> list[_rollout.Decision]:
        """Evaluate every active rollout (call it after new evidence arrives).

        Args:
            project_id: only this project's rollouts (None: all).

        Returns:
            The decisions that changed something.
        """
        out = []
        for pid, route in _rollout_store.active(self.db):
            if project_id is None or pid == project_id:
                d = self.evaluate(pid, route)
                if d.changed:
                    out.append(d)
        return out

    def action(
        self, project_id: int, route: str, action: str, by: str = "admin"
    ) -> _rollout.Decision:
        """Apply a manual ``pause``, ``resume``, ``rollback`` or ``promote``.

        Args:
            project_id: the project.
            route: the route.
            action: the action.
            by: who asked (shown in the event).

        Returns:
            The decision.

        Raises:
            KeyError: the route has no rollout.
            TransitionError: the action does not apply now.
        """
        with self._lock:
            row = self._require(project_id, route)
            ev = self._evidence(project_id, row) if action == "resume" else None
            d = _rollout.apply_action(row.state, action, self.clock(), ev, by=by)
            self._apply(project_id, row, d)
            return d

    def status(self, project_id: int, route: str) -> dict[str, Any]:
        """Return a rollout's state, policy, job, evidence summary and events.

        Args:
            project_id: the project.
            route: the route.

        Returns:
            The JSON status.

        Raises:
            KeyError: the route has no rollout.
        """
        row = self._require(project_id, route)
        ev = self._evidence(project_id, row)
        info = {k: v for k, v in row.info.items() if k != "test"}
        return {
            "route": route,
            "state": row.state.to_json(),
            "variant_pct": _rollout.variant_pct(row.state),
            "policy": row.policy.to_json(),
            "info": info,
            "evidence": {
                arm: {
                    "calls": a.calls,
                    "errors": a.errors,
                    "feedback": a.feedback,
                    "successes": a.successes,
                }
                for arm, a in (("control", ev.control), ("variant", ev.variant))
            },
            "events": _rollout_store.list_events(self.db, project_id, route),
        }

    def _require(self, project_id: int, route: str) -> _rollout_store.RolloutRow:
        row = _rollout_store.load(self.db, project_id, route)
        if row is None:
            raise KeyError(f"route {route!r} has no rollout; start one with POST /v1/finetune")
        return row

    def _apply(self, project_id: int, row: _rollout_store.RolloutRow, d: _rollout.Decision) -> None:
        now = self.clock()
        if d.state.status == Status.CANARY and d.previous.status in (
            Status.TRAINING,
            Status.EVALUATING,
        ):
            row.info["canary_since"] = now
        if d.state.status == Status.ROLLED_BACK and "canary_since" in row.info:
            # The rolled-back model's failures stay in the calls table, tagged with its
            # variant name, for the next dataset (relabelling or review).
            row.info["rolled_back_variant"] = row.info.get("variant_name")
        row.state = d.state
        _rollout_store.save(self.db, project_id, row)
        self._sync_route(project_id, row, d)
        self._event(project_id, row, d.event(now))

    def _sync_route(
        self, project_id: int, row: _rollout_store.RolloutRow, d: _rollout.Decision
    ) -> None:
        st = row.state
        if st.variant_model is None or st.status in (Status.FAILED, Status.TRAINING):
            return
        name = st.route
        route = _routes_store.get_route(self.db, project_id, name) or {
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
        _routes_store.put_route(self.db, project_id, name, route)

    # -- notifications -------------------------------------------------------

    def _event(
        self, project_id: int, row: _rollout_store.RolloutRow, event: dict[str, Any]
    ) -> None:
        event = {"project_id": project_id, **event}
        event["id"] = _rollout_store.add_event(self.db, project_id, event)
        logger.info(
            "rollout %s: %s -> %s: %s",
            event["route"],
            event.get("from"),
            event.get("to"),
            "; ".join(event.get("reasons") or []),
            extra={"rollout_event": event},
        )
        url = row.info.get("webhook_url")
        if url:
            self._spawn(self._post_webhook, str(url), event)

    def _post_webhook(self, url: str, event: dict[str, Any]) -> None:
        delay = self.webhook_backoff_s
        for attempt in range(1 + self.webhook_retries):
            try:
                resp = requests.post(url, json=event, timeout=5.0)
                resp.close()
                if resp.status_code < 300:
                    self.webhook_log.append(
                        {"url": url, "event": event["id"], "ok": True, "attempts": attempt + 1}
                    )
                    return
                why = f"HTTP {resp.status_code}"
            except requests.RequestException as exc:
                why = str(exc)
            logger.warning("webhook %s attempt %d failed: %s", url, attempt + 1, why)
            if attempt < self.webhook_retries and self._stop.wait(delay):
                break
            delay *= 2
        self.webhook_log.append(
            {"url": url, "event": event["id"], "ok": False, "attempts": 1 + self.webhook_retries}
        )

    # -- threads -------------------------------------------------------------

    def _spawn(self, fn: Callable[..., None], *args: Any) -> None:
        t = threading.Thread(target=fn, args=args, daemon=True, name="logos-rollout")
        with self._lock:
            self._threads = [x for x in self._threads if x.is_alive()]
            self._threads.append(t)
        t.start()

    def _sleep(self, seconds: float) -> None:
        self._stop.wait(seconds)

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Wait for job watchers and webhook deliveries to finish.

        Args:
            timeout: seconds to wait at most.

        Returns:
            True when nothing is left running.
        """
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                alive = [t for t in self._threads if t.is_alive()]
            if not alive:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            alive[0].join(remaining)

    def close(self, timeout: float = 5.0) -> None:
        """Stop background work (job polls end early) and wait for the threads.

        Args:
            timeout: seconds to wait.
        """
        self._stop.set()
        self.wait_idle(timeout)
