"""The rollout service: fine-tune jobs, rollout transitions, route config, notifications.

Glue between the pure engine (:mod:`.engine`), the dataset builder, the
fine-tuning backend and the server's storage.  Every transition is stored as an
event, logged, and POSTed to the rollout's webhook URL (with retries) on a
background thread; the route the clients fetch is rewritten on every transition,
so a rollback reaches each client within one config refresh.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any

from logos_shift.server.finetune import backend as _finetune
from logos_shift.server.finetune import dataset as _dataset_builder
from logos_shift.server.finetune.targets import BackendTarget, resolve_backend
from logos_shift.server.outbound import check_url, redact_url
from logos_shift.server.settings import ServerSettings
from logos_shift.server.store import launches as _launches
from logos_shift.server.store import queries
from logos_shift.server.store import rollouts as _rollout_store
from logos_shift.server.store import routes as _routes_store
from logos_shift.server.store.db import Database

from . import engine as _rollout
from . import evidence as _evidence
from . import notify, route_sync
from .failures import answered_hashes, keep_failures
from .types import Evidence, FinetuneRequest, Policy, Status, TransitionError

__all__ = ["FinetuneRequest", "RolloutService"]

logger = logging.getLogger("logos_shift.server.rollout")


class RolloutService:
    """Runs fine-tunes and rollouts for one server database.

    Args:
        db: the server's database.
        backend_factory: builds a backend from ``(base_url, api_key)`` (an operator's own
            backend class); None: the OpenAI-compatible client, under the outbound policy
            for a project's own URL.
        clock: wall clock (Unix seconds) used for state times.
        job_timeout_s: give up on a fine-tuning job after this long.
        poll_s: ``(initial, max)`` delay between job polls.
        webhook_retries: extra attempts after a failed webhook POST.
        webhook_backoff_s: first delay between webhook attempts (doubles).
        settings: backends, outbound policy, quotas (default: the app's, set by ``install``).
    """

    def __init__(
        self,
        db: Database,
        backend_factory: _finetune.BackendFactory | None = None,
        clock: Callable[[], float] = time.time,
        job_timeout_s: float = 24 * 3600.0,
        poll_s: tuple[float, float] = (0.5, 30.0),
        webhook_retries: int = 3,
        webhook_backoff_s: float = 0.5,
        settings: ServerSettings | None = None,
    ) -> None:
        self.db = db
        self.backend_factory = backend_factory
        self.settings = settings
        self.clock = clock
        self.job_timeout_s = job_timeout_s
        self.poll_s = poll_s
        self.webhook_retries = webhook_retries
        self.webhook_backoff_s = webhook_backoff_s
        self._lock = threading.RLock()
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self.webhook_log: collections.deque[dict[str, Any]] = collections.deque(maxlen=100)
        self._dirty: set[int] = set()
        self._wake = threading.Event()
        self._evaluator: threading.Thread | None = None

    # -- fine-tuning -------------------------------------------------------

    def start_finetune(self, project_id: int, req: FinetuneRequest) -> dict[str, Any]:
        """Build the dataset, upload it, create the job and start watching it.

        Args:
            project_id: the project.
            req: the request.

        The inputs earlier rolled-back models of the dataset failed on (see
        :meth:`failures`) are passed to the builder as hard inputs: good answers
        to them are up-weighted, and the counts say how many lack one.

        Returns:
            ``{"route", "job", "dataset": counts, "files": uploaded file ids,
            "warnings", "state"}``, plus ``"webhook_secret"`` (shown this once)
            when a webhook URL was given.

        Raises:
            TransitionError: the route already has a rollout in progress.
            ValueError: an invalid policy.
            BackendRefused: the backend asked for may not be used (see ``targets``).
            OutboundRefused: the backend or webhook URL fails the address policy.
            DatasetError: the dataset is too small or malformed (no job created).
            QuotaExceeded: the project used its launches of the last 24 hours.
            FineTuneError: the backend failed (the route stays on control).
        """
        route = req.route or req.dataset
        policy = Policy.from_json(req.policy)
        settings = self.settings or ServerSettings()
        target = resolve_backend(settings, req.backend, req.backend_url, req.backend_api_key)
        if req.webhook_url is not None:
            check_url(
                req.webhook_url, settings.outbound, what="webhook_url",
                allow_userinfo=True, allow_query=True,
            )  # fmt: skip
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
        if (
            old is not None
            and old.state.status == Status.ROLLED_BACK
            and old.state.variant_model
            and old.canary_since is not None
        ):
            # Failure feedback that arrived after the rollback is kept too (idempotent).
            keep_failures(
                self.db,
                project_id,
                route,
                str(old.variant_name),
                old.state.variant_model,
                old.canary_since,
            )
        window = queries.CallFilter(dataset=req.dataset, since=req.since, until=req.until)
        records, models = queries.dataset_calls(self.db, project_id, window)
        fb = {r["id"]: f for r, f in records}
        spec = _dataset_builder.DatasetSpec(
            min_score=req.min_score, since=req.since, until=req.until
        )
        hard = _rollout_store.failure_hashes(self.db, project_id, req.dataset)
        ds = _dataset_builder.build((r for r, _ in records), fb, spec, hard)
        control_model = req.control_model or (models.most_common(1)[0][0] if models else None)
        if req.control_model is None and old is not None and old.state.status == Status.PROMOTED:
            # The promoted model is what the route serves now: it becomes the control.
            control_model = old.state.variant_model
        now = self.clock()
        webhook_secret = "whsec_" + secrets.token_urlsafe(32) if req.webhook_url else None
        state = _rollout.start(route, control_model, now, policy)
        row = _rollout_store.RolloutRow(
            state,
            policy,
            dataset=req.dataset,
            dataset_counts=ds.counts,
            base_model=req.base_model,
            backend=target.name,
            backend_url=None if target.configured else redact_url(target.base_url),
            webhook_url=req.webhook_url,
            # Signs the webhook's deliveries; shown once (the launch's answer), never again.
            webhook_secret=webhook_secret,
            test_split=[{"input": t["input"], "expected": t["expected"]} for t in ds.test[:200]],
        )
        _launches.reserve(self.db, project_id, target.name, route, settings.launches_per_day, now)
        backend: _finetune.FineTuneBackend | None = None
        try:
            backend = self._backend(target)
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
            d = _rollout.on_training_finished(state, False, None, now, policy, str(exc))
            self._apply(project_id, row, d)
            raise
        row.job = job.to_json()
        row.train_file, row.validation_file = train_id, val_id
        row.variant_name = f"ft-{job.id[-8:]}"
        row.state = state = dataclasses.replace(state, job_id=job.id)
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
        self._spawn(self._watch, project_id, route, backend, job.id, target)
        out = {
            "route": route,
            "job": job.to_json(),
            "dataset": ds.counts,
            "files": {"train": train_id, "validation": val_id},
            "warnings": ds.warnings,
            "state": state.to_json(),
        }
        if webhook_secret is not None:
            out["webhook_secret"] = webhook_secret
        return out

    def _backend(self, target: BackendTarget) -> _finetune.FineTuneBackend:
        if self.backend_factory is not None:
            return self.backend_factory(target.base_url, target.api_key)
        return target.build()

    def _watch(
        self,
        project_id: int,
        route: str,
        backend: _finetune.FineTuneBackend,
        job_id: str,
        target: BackendTarget,
    ) -> None:
        last = {"status": ""}

        def progress(job: _finetune.JobInfo, events: list[_finetune.JobEvent]) -> None:
            if job.provider_status != last["status"]:
                last["status"] = job.provider_status
                logger.info("fine-tuning job %s is %s", job_id, job.provider_status)
                row = _rollout_store.load(self.db, project_id, route)
                if row is not None:
                    row.job = job.to_json()
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
            self._offline_eval(project_id, route, target)

    def _offline_eval(self, project_id: int, route: str, target: BackendTarget) -> None:
        from logos_shift.server.finetune.judge import judge_test_split

        row = _rollout_store.load(self.db, project_id, route)
        if row is None or row.state.variant_model is None:
            return
        # The model is asked where it was trained, with that backend's key, under the
        # same address policy: no other URL ever sees the key.
        passed, total = judge_test_split(
            target.base_url,
            row.state.variant_model,
            row.test_split,
            api_key=target.api_key,
            policy=target.policy,
        )
        with self._lock:
            row = _rollout_store.load(self.db, project_id, route)
            if row is not None and row.state.status == Status.EVALUATING:
                d = _rollout.on_offline_eval(row.state, passed, total, self.clock(), row.policy)
                self._apply(project_id, row, d)

    # -- rollout -------------------------------------------------------------

    def _evidence(self, project_id: int, row: _rollout_store.RolloutRow) -> Evidence:
        route = _routes_store.get_route(self.db, project_id, row.state.route)
        if route is None or row.canary_since is None or row.variant_name is None:
            return Evidence()
        return _evidence.evidence(
            self.db,
            project_id,
            row.state.route,
            str(route["control"]["name"]),
            row.variant_name,
            row.canary_since,
            # Clients follow a new stage at their next config refresh: the calls
            # made before that are left out of the sample-ratio check.
            stage_from=row.state.since + row.policy.srm_grace_s,
            # The SRM check counts what the router assigns: distinct units.
            unit_key=str((route.get("assignment") or {}).get("unit") or "user_id"),
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
                d = self._apply(project_id, row, d)
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
            return self._apply(project_id, row, d)

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
        info = row.public()
        if info.get("webhook_url"):
            info["webhook_url"] = redact_url(str(info["webhook_url"]))
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
            # What the sample-ratio check counts in the current stage (after the
            # grace period): distinct units plus unit-less calls, and the calls.
            "srm_window": {
                "since": row.state.since + row.policy.srm_grace_s,
                "units": _pair(ev.stage_units),
                "calls": _pair(ev.stage_calls),
            },
            "events": _rollout_store.list_events(self.db, project_id, route),
        }

    def failures(self, project_id: int, route: str) -> dict[str, Any]:
        """Return the calls rolled-back models of a route's dataset failed on.

        Kept at each rollback (failure feedback, errors, fallbacks); the next
        ``start_finetune`` on the dataset up-weights good answers to their inputs.

        Args:
            project_id: the project.
            route: the route.

        Returns:
            ``{"route", "dataset", "count", "unanswered", "failures": [...]}``;
            ``unanswered`` counts the distinct inputs no call with success
            feedback answers yet (they need a good answer before they can teach).

        Raises:
            KeyError: the route has no rollout.
        """
        row = self._require(project_id, route)
        dataset = row.dataset
        items = _rollout_store.list_failures(self.db, project_id, dataset=dataset)
        hashes = {str(f["input_hash"]) for f in items if f["input_hash"]}
        answered = answered_hashes(self.db, project_id, dataset, hashes)
        return {
            "route": route,
            "dataset": dataset,
            "count": len(items),
            "inputs": len(hashes),
            "unanswered": len(hashes - answered),
            "failures": [{**f, "answered": f["input_hash"] in answered} for f in items],
        }

    def _require(self, project_id: int, route: str) -> _rollout_store.RolloutRow:
        row = _rollout_store.load(self.db, project_id, route)
        if row is None:
            raise KeyError(f"route {route!r} has no rollout; start one with POST /v1/finetune")
        return row

    def _apply(
        self, project_id: int, row: _rollout_store.RolloutRow, d: _rollout.Decision
    ) -> _rollout.Decision:
        now = self.clock()
        if d.state.status == Status.CANARY and d.previous.status in (
            Status.TRAINING,
            Status.EVALUATING,
        ):
            # The engine's time of the transition: the canary's windows start exactly there.
            row.canary_since = d.state.since
        if (
            d.state.status == Status.ROLLED_BACK
            and d.previous.status != Status.ROLLED_BACK
            and row.canary_since is not None
            and d.state.variant_model
        ):
            # The rolled-back model's failed calls are kept (their inputs): the next
            # dataset of this dataset up-weights good answers to those inputs.
            kept = keep_failures(
                self.db,
                project_id,
                d.state.route,
                str(row.variant_name),
                d.state.variant_model,
                row.canary_since,
            )
            row.rolled_back_variant = row.variant_name
            row.kept_failures = kept
            d = dataclasses.replace(
                d,
                numbers={**d.numbers, "kept_failures": kept},
                reasons=(
                    *d.reasons,
                    f"kept {kept} failed calls of {d.state.variant_model} for the next dataset",
                ),
            )
        row.state = d.state
        # The event is stored first, so whoever reads the new state finds its event;
        # it is announced (log, webhook) once the state and the route are saved.
        event = self._store_event(project_id, d.event(now))
        _rollout_store.save(self.db, project_id, row)
        route_sync.sync_route(self.db, project_id, row, d)
        self._announce(row, event)
        return d

    # -- notifications -------------------------------------------------------

    def _event(
        self, project_id: int, row: _rollout_store.RolloutRow, event: dict[str, Any]
    ) -> None:
        self._announce(row, self._store_event(project_id, event))

    def _store_event(self, project_id: int, event: dict[str, Any]) -> dict[str, Any]:
        event = {"project_id": project_id, **event}
        event["id"] = _rollout_store.add_event(self.db, project_id, event)
        return event

    def _announce(self, row: _rollout_store.RolloutRow, event: dict[str, Any]) -> None:
        logger.info(
            "rollout %s: %s -> %s: %s",
            event["route"],
            event.get("from"),
            event.get("to"),
            "; ".join(event.get("reasons") or []),
            extra={"rollout_event": event},
        )
        url = row.webhook_url
        if url:
            settings = self.settings or ServerSettings()
            self._spawn(
                notify.post_webhook,
                str(url),
                event,
                self.webhook_retries,
                self.webhook_backoff_s,
                self._stop,
                self.webhook_log,
                notify.Signing(row.webhook_secret, settings.outbound, settings.webhook_timeout_s),
            )

    # -- reacting to evidence ------------------------------------------------

    def nudge(self, project_id: int) -> None:
        """Note that new calls or feedback arrived for a project; never blocks.

        The background evaluator (see :meth:`start_background`) evaluates the
        project's active rollouts soon after; call this after every ingest.

        Args:
            project_id: the project that received records.
        """
        with self._lock:
            self._dirty.add(project_id)
        self._wake.set()

    def start_background(self, interval_s: float = 30.0, debounce_s: float = 0.5) -> None:
        """Start the evaluator thread: nudged projects soon, every rollout each interval.

        The interval also lets time-based gates (``min_stage_s``) pass without
        new evidence.  Idempotent.

        Args:
            interval_s: seconds between full evaluations.
            debounce_s: delay that batches nudges arriving together.
        """
        with self._lock:
            if self._evaluator is not None:
                return
            t = threading.Thread(
                target=self._evaluate_loop,
                args=(interval_s, debounce_s),
                daemon=True,
                name="logos-rollout-eval",
            )
            self._evaluator = t
        t.start()

    def _evaluate_loop(self, interval_s: float, debounce_s: float) -> None:
        next_full = time.monotonic() + interval_s
        while not self._stop.is_set():
            self._wake.wait(max(0.0, next_full - time.monotonic()))
            if self._stop.wait(debounce_s):
                return
            self._wake.clear()
            with self._lock:
                dirty, self._dirty = self._dirty, set()
            full = time.monotonic() >= next_full
            if full:
                next_full = time.monotonic() + interval_s
            try:
                if full:
                    self.evaluate_all()
                for pid in dirty:
                    self.evaluate_all(pid)
            except Exception:  # the loop must survive a bad rollout
                logger.exception("rollout evaluation failed")

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
        self._wake.set()
        self.wait_idle(timeout)
        if self._evaluator is not None:
            self._evaluator.join(timeout)


def _pair(counts: tuple[int, int] | None) -> dict[str, int] | None:
    return None if counts is None else {"variant": counts[0], "control": counts[1]}
