"""The rollout service: fine-tune jobs, rollout transitions, route config, notifications.

Glue between the pure engine (:mod:`.engine`), the dataset builder, the
fine-tuning backend and the server's storage.  The rollout loop (:meth:`RolloutService.start`,
run by the app's lifespan, in the one process holding the lease of :mod:`.leader`)
evaluates a route about a second after records for its dataset arrive
(:mod:`logos_shift.server.events`), polls the fine-tuning jobs it finds in the
database, and looks at every rollout each interval.  A transition is one
transaction (state, event, the route the clients fetch), committed only on the
state it was decided on; once committed it is logged and POSTed to the rollout's
webhook URL (with retries) on a background thread, so a rollback reaches each
client within one config refresh.
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

from sqlalchemy.engine import Connection

from logos_shift.server.events import ANY_DATASET, Events
from logos_shift.server.finetune import backend as _finetune
from logos_shift.server.finetune import dataset as _dataset_builder
from logos_shift.server.finetune.targets import BackendTarget, resolve_backend
from logos_shift.server.outbound import check_url, redact_url
from logos_shift.server.settings import ServerSettings
from logos_shift.server.store import launches as _launches
from logos_shift.server.store import leases as _leases
from logos_shift.server.store import queries
from logos_shift.server.store import rollouts as _rollout_store
from logos_shift.server.store import routes as _routes_store
from logos_shift.server.store.db import Database

from . import engine as _rollout
from . import evidence as _evidence
from . import notify, route_sync
from .failures import answered_hashes, keep_failures
from .leader import Leader, LostLease
from .types import Evidence, FinetuneRequest, Policy, RolloutState, Status, TransitionError

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
        self._wake = threading.Event()
        # (project, datasets) that received records since the loop last looked.
        self._pending: dict[int, set[str]] = {}
        self._pending_since = 0.0
        self._loop: threading.Thread | None = None
        self._leader: Leader | None = None
        self._unsubscribe: Callable[[], None] | None = None
        # job id -> (next poll, delay after it, provider errors in a row); the loop's own.
        self._polls: dict[str, tuple[float, float, int]] = {}

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
        # The control is what the route serves now: after a promotion the promoted
        # model (also when a later fine-tune failed before its canary).
        serving = route_sync.serving_model(_routes_store.get_route(self.db, project_id, route))
        control_model = (
            req.control_model or serving or (models.most_common(1)[0][0] if models else None)
        )
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
            previous = old.state if old is not None else None
            self._apply(project_id, row, d, new_rollout=True, replaces=previous)
            raise
        row.job = job.to_json()
        row.train_file, row.validation_file = train_id, val_id
        row.variant_name = f"ft-{job.id[-8:]}"
        row.state = state = dataclasses.replace(state, job_id=job.id)
        try:
            with self.db.write() as conn:  # the state and its first event, together
                # Another launch of this route (another process) may have won meanwhile.
                self._check(conn, project_id, route, old.state if old else None, False)
                _rollout_store.save(self.db, project_id, row)
            event = self._store_event(
                project_id,
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
        except TransitionError:
            try:
                backend.cancel(job.id)
            except _finetune.FineTuneError:
                pass
            backend.close()
            raise TransitionError(
                f"route {route!r} already has a rollout in progress (started meanwhile)"
            ) from None
        self._announce(row, event)
        if target.configured:
            # The rollout loop (in whichever server process leads) polls the job: it
            # finds it in the database, so a restart resumes the watch.
            backend.close()
            self._wake.set()
        else:
            # A project's own backend key is never stored: only this process can poll.
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
        """Watch a job on a project's own backend from this process, until it ends."""

        def progress(job: _finetune.JobInfo, events: list[_finetune.JobEvent]) -> None:
            self._job_progress(project_id, route, job, events, fenced=False)

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
            ok, model, detail = _job_outcome(job)
        except _finetune.FineTuneError as exc:
            ok, model, detail = False, None, str(exc)
            if isinstance(exc, _finetune.FineTuneTimeout):
                try:
                    backend.cancel(job_id)
                except _finetune.FineTuneError:
                    pass
        finally:
            backend.close()
        if not self._stop.is_set():
            self._training_finished(project_id, route, job_id, ok, model, detail, target, False)

    def _job_progress(
        self,
        project_id: int,
        route: str,
        job: _finetune.JobInfo,
        events: list[_finetune.JobEvent],
        fenced: bool,
    ) -> None:
        """Keep a job's provider status (and a ``job_status`` event when it changed)."""
        row = _rollout_store.load(self.db, project_id, route)
        if row is None or row.state.status != Status.TRAINING or row.state.job_id != job.id:
            return
        if (row.job or {}).get("provider_status") == job.provider_status:
            return
        logger.info("fine-tuning job %s is %s", job.id, job.provider_status)
        row.job = job.to_json()
        with self.db.write() as conn:
            self._check(conn, project_id, route, row.state, fenced)
            _rollout_store.save(self.db, project_id, row)
            self._store_event(
                project_id,
                {
                    "route": route,
                    "ts": self.clock(),
                    "action": "job_status",
                    "to": job.provider_status,
                    "reasons": [e.message for e in events],
                },
            )

    def _training_finished(
        self,
        project_id: int,
        route: str,
        job_id: str,
        ok: bool,
        model: str | None,
        detail: str,
        target: BackendTarget | None,
        fenced: bool,
    ) -> None:
        with self._lock:
            row = _rollout_store.load(self.db, project_id, route)
            if row is None or row.state.status != Status.TRAINING or row.state.job_id != job_id:
                return
            d = _rollout.on_training_finished(
                row.state, ok, model, self.clock(), row.policy, detail
            )
            self._apply(project_id, row, d, fenced=fenced)
        if d.state.status == Status.EVALUATING and target is not None:
            self._offline_eval(project_id, route, target, fenced)

    def _offline_eval(
        self, project_id: int, route: str, target: BackendTarget, fenced: bool
    ) -> None:
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
                self._apply(project_id, row, d, fenced=fenced)

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
        return self._evaluate(project_id, route, fenced=False)

    def _evaluate(self, project_id: int, route: str, fenced: bool) -> _rollout.Decision:
        with self._lock:
            row = self._require(project_id, route)
            d = _rollout.evaluate(
                row.state, row.policy, self._evidence(project_id, row), self.clock()
            )
            if d.changed:
                d = self._apply(project_id, row, d, fenced=fenced)
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
        events = _rollout_store.list_events(self.db, project_id, route)
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
            "events": events,
            "serving": _serving(
                route_sync.serving_model(_routes_store.get_route(self.db, project_id, route)),
                events,
            ),
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

    def _check(
        self,
        conn: Connection,
        project_id: int,
        route: str,
        expected: RolloutState | None,
        fenced: bool,
    ) -> None:
        """Refuse a write whose rollout changed meanwhile, or whose loop lost the lease.

        Runs inside the write's transaction: the row is locked (PostgreSQL; SQLite
        holds the write lock already), so a transition commits only on the state it
        was decided on, once, whichever process or thread tried first.
        """
        if fenced:
            if self._leader is None:
                raise LostLease("the rollout loop is not running")
            self._leader.fence(conn)
        current = _rollout_store.lock_state(self.db, project_id, route)
        if current != expected:
            now = current.status.value if current is not None else "gone"
            raise TransitionError(f"the rollout of {route!r} changed meanwhile (now {now})")

    def _apply(
        self,
        project_id: int,
        row: _rollout_store.RolloutRow,
        d: _rollout.Decision,
        *,
        fenced: bool = False,
        new_rollout: bool = False,
        replaces: RolloutState | None = None,
    ) -> _rollout.Decision:
        """Commit a transition as one transaction: state, event and route config.

        The stored state must be ``d.previous`` (for a ``new_rollout``: ``replaces``,
        the route's previous rollout, or None).

        Raises:
            TransitionError: the rollout changed since ``d`` was decided.
            LostLease: ``fenced`` and this process no longer leads.
        """
        with self.db.write() as conn:
            expected = replaces if new_rollout else d.previous
            self._check(conn, project_id, d.state.route, expected, fenced)
            d, event = self._write_transition(project_id, row, d)
        # Announced (log, webhook) only once committed: exactly once per transition.
        self._announce(row, event)
        return d

    def _write_transition(
        self, project_id: int, row: _rollout_store.RolloutRow, d: _rollout.Decision
    ) -> tuple[_rollout.Decision, dict[str, Any]]:
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
        event = self._store_event(project_id, d.event(now))
        _rollout_store.save(self.db, project_id, row)
        route_sync.sync_route(self.db, project_id, row, d)
        return d, event

    # -- notifications -------------------------------------------------------

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

    # -- the rollout loop --------------------------------------------------

    def records_arrived(self, project_id: int, datasets: frozenset[str]) -> None:
        """Note that calls or feedback arrived for a project's datasets; never blocks.

        The loop evaluates the rollouts of those datasets about ``debounce_s``
        later (see :meth:`start`); subscribe it to the app's
        :class:`~logos_shift.server.events.Events`.

        Args:
            project_id: the project that received records.
            datasets: their datasets (``""``: feedback, whose dataset is its call's).
        """
        with self._lock:
            if not self._pending:
                self._pending_since = time.monotonic()
            self._pending.setdefault(project_id, set()).update(datasets)
        self._wake.set()

    def nudge(self, project_id: int) -> None:
        """Note that records arrived for a project (any dataset); never blocks.

        Args:
            project_id: the project.
        """
        self.records_arrived(project_id, frozenset({ANY_DATASET}))

    def start(
        self,
        *,
        interval_s: float = 5.0,
        debounce_s: float = 1.0,
        lease_s: float = 10.0,
        events: Events | None = None,
    ) -> None:
        """Start the rollout loop of this process (idempotent; the app's lifespan calls it).

        Exactly one process of the database leads (a lease, see :mod:`.leader`);
        its loop evaluates a route about ``debounce_s`` after its dataset received
        calls or feedback (in any process: the others leave ingest marks in the
        database, read each ``debounce_s``), polls fine-tuning jobs, and every
        ``interval_s`` evaluates every rollout (``min_stage_s``, stale stages).
        The other processes only pass their arrivals on.

        Args:
            interval_s: seconds between full evaluations.
            debounce_s: delay that batches arrivals (and how often marks are read).
            lease_s: the leader lease's length; a dead leader is replaced within it
                plus a third.
            events: the app's events to subscribe to (``app.state.events``).
        """
        with self._lock:
            if self._loop is not None:
                return
            self._stop.clear()
            if events is not None:
                self._unsubscribe = events.subscribe(self.records_arrived)
            self._leader = Leader(self.db, lease_s=lease_s)
            t = threading.Thread(
                target=self._run_loop,
                args=(interval_s, debounce_s),
                daemon=True,
                name="logos-rollout-loop",
            )
            self._loop = t
        self._leader.start()
        t.start()

    @property
    def is_leader(self) -> bool:
        """Whether this process runs the rollout loop now."""
        return self._leader is not None and self._leader.is_leader

    def _run_loop(self, interval_s: float, debounce_s: float) -> None:
        assert self._leader is not None
        leader = self._leader
        marks: dict[tuple[int, str], int] | None = None
        next_tick = 0.0
        last_relay = 0.0
        while not self._stop.is_set():
            with self._lock:
                since = self._pending_since if self._pending else None
            wait = debounce_s
            if since is not None:
                wait = min(wait, since + debounce_s - time.monotonic())
            if self._polls and leader.is_leader:
                wait = min(wait, min(due for due, _, _ in self._polls.values()) - time.monotonic())
            wait = max(0.0, wait)
            self._wake.wait(wait)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                if not leader.is_leader:
                    marks, next_tick = None, 0.0
                    if time.monotonic() - last_relay >= debounce_s:
                        last_relay = time.monotonic()
                        self._relay()
                    continue
                marked = False
                if marks is None:
                    marks = _leases.read_marks(self.db)  # the baseline; the tick covers the rest
                else:
                    marks, marked = self._read_marks(marks)
                self._poll_jobs()
                if time.monotonic() >= next_tick:
                    next_tick = time.monotonic() + interval_s
                    self._tick()
                elif marked or (
                    self._pending and time.monotonic() - self._pending_since >= debounce_s
                ):
                    self._evaluate_pending()
            except LostLease:
                logger.info("rollout loop: the lease moved on; this process follows")
            except Exception:  # the loop must survive a bad rollout or a lost database
                logger.exception("rollout loop step failed")

    def _relay(self) -> None:
        """A follower passes its arrivals to the leader: one upsert per dataset."""
        with self._lock:
            pending, self._pending = self._pending, {}
        keys = [(pid, ds) for pid, dss in pending.items() for ds in dss]
        if keys:
            _leases.mark_ingest(self.db, keys)

    def _read_marks(
        self, seen: dict[tuple[int, str], int]
    ) -> tuple[dict[tuple[int, str], int], bool]:
        """Add what followers marked since ``seen`` to the pending arrivals.

        Returns:
            The marks now, and whether any changed (followers batched them: due now).
        """
        marks = _leases.read_marks(self.db)
        fresh = [k for k, seq in marks.items() if seen.get(k) != seq]
        with self._lock:
            for pid, ds in fresh:
                self._pending.setdefault(pid, set()).add(ds)
        return marks, bool(fresh)

    def _evaluate_pending(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
        for pid, route in _rollout_store.active(self.db):
            datasets = pending.get(pid)
            if not datasets:
                continue
            if ANY_DATASET not in datasets:
                row = _rollout_store.load(self.db, pid, route)
                if row is None or str(row.dataset or route) not in datasets:
                    continue
            self._evaluate_quietly(pid, route)

    def _tick(self) -> None:
        """Everything time alone changes: every rollout, and stale offline evaluations."""
        with self._lock:
            self._pending = {}
        for pid, route in _rollout_store.active(self.db):
            self._evaluate_quietly(pid, route)
        for pid, route in _rollout_store.active(self.db, ("evaluating",)):
            # Evaluations run on this thread to the end: one still open was cut
            # short (a restart, a lost lease) and is run again.
            row = _rollout_store.load(self.db, pid, route)
            target = self._target_of(row) if row is not None else None
            if target is not None:
                self._offline_eval(pid, route, target, True)

    def _evaluate_quietly(self, project_id: int, route: str) -> None:
        try:
            self._evaluate(project_id, route, fenced=True)
        except (KeyError, TransitionError):
            pass  # removed or moved on meanwhile (a manual action): next time

    def _target_of(self, row: _rollout_store.RolloutRow) -> BackendTarget | None:
        """The configured backend a rollout's job runs on (None: a project's own URL)."""
        name = row.backend
        if not isinstance(name, str) or name == "project":
            return None
        try:
            return resolve_backend(self.settings or ServerSettings(), name, None, None)
        except ValueError:
            return None  # the operator removed the backend; see _poll_jobs

    def _poll_jobs(self) -> None:
        """Poll each training job on a configured backend that is due, once."""
        now = time.monotonic()
        ids: set[str] = set()
        for pid, route in _rollout_store.active(self.db, ("training",)):
            row = _rollout_store.load(self.db, pid, route)
            if row is None or row.state.job_id is None:
                continue
            job_id = row.state.job_id
            ids.add(job_id)
            due, delay, errors = self._polls.get(job_id, (0.0, self.poll_s[0], 0))
            if now < due:
                continue
            if row.backend == "project":
                continue  # watched by the process that launched it (it alone has the key)
            target = self._target_of(row)
            if target is None:
                reason = f"backend {row.backend!r} is no longer configured"
                self._training_finished(pid, route, job_id, False, None, reason, None, True)
                continue
            self._polls[job_id] = (now + delay, min(delay * 1.5, self.poll_s[1]), errors)
            self._poll_job(pid, route, row, job_id, target, errors)
        self._polls = {k: v for k, v in self._polls.items() if k in ids}

    def _poll_job(
        self,
        project_id: int,
        route: str,
        row: _rollout_store.RolloutRow,
        job_id: str,
        target: BackendTarget,
        errors: int,
    ) -> None:
        backend = self._backend(target)
        try:
            job = backend.retrieve(job_id)
            events = backend.events(job_id)
        except _finetune.FineTuneError as exc:
            due, delay, _ = self._polls[job_id]
            self._polls[job_id] = (due, delay, errors + 1)
            if errors + 1 < 5:
                return
            ok, model, detail = False, None, str(exc)
        else:
            self._job_progress(project_id, route, job, events, fenced=True)
            if not job.status.terminal:
                if self.clock() - row.state.since <= self.job_timeout_s:
                    return
                try:
                    backend.cancel(job_id)
                except _finetune.FineTuneError:
                    pass
                ok, model = False, None
                detail = (
                    f"fine-tuning job {job_id} did not finish within {self.job_timeout_s:g}s; "
                    "it may still be running at the provider"
                )
            else:
                ok, model, detail = _job_outcome(job)
        finally:
            backend.close()
        self._polls.pop(job_id, None)
        self._training_finished(project_id, route, job_id, ok, model, detail, target, True)

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
        """Wait for job watches and webhook deliveries to finish.

        A job the loop watches counts while its rollout is ``training`` or
        ``evaluating`` and this process leads.

        Args:
            timeout: seconds to wait at most.

        Returns:
            True when nothing is left running.
        """
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                alive = [t for t in self._threads if t.is_alive()]
            watching = self.is_leader and bool(
                _rollout_store.active(self.db, ("training", "evaluating"))
            )
            if not alive and not watching:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            if alive:
                alive[0].join(min(remaining, 0.05) if watching else remaining)
            else:
                time.sleep(min(remaining, 0.02))

    def close(self, timeout: float = 5.0) -> None:
        """Stop the loop (and release its lease) and background work; wait for the threads.

        Args:
            timeout: seconds to wait.
        """
        self._stop.set()
        self._wake.set()
        with self._lock:
            loop, self._loop = self._loop, None
            unsubscribe, self._unsubscribe = self._unsubscribe, None
        if unsubscribe is not None:
            unsubscribe()
        if loop is not None:
            loop.join(timeout)
        if self._leader is not None:
            self._leader.stop(timeout)
        self.wait_idle(timeout)


def _job_outcome(job: _finetune.JobInfo) -> tuple[bool, str | None, str]:
    return (
        job.status == _finetune.JobStatus.SUCCEEDED,
        job.fine_tuned_model,
        job.error or f"job ended {job.provider_status}",
    )


def _serving(model: str | None, events: list[dict[str, Any]]) -> dict[str, Any] | None:
    """What the route serves now and since when (its last promotion or rollback, if any)."""
    if model is None:
        return None
    since = None
    for e in events:
        if e.get("action") in ("promote", "rollback"):
            since = e.get("ts")
    return {"model": model, "since": since}


def _pair(counts: tuple[int, int] | None) -> dict[str, int] | None:
    return None if counts is None else {"variant": counts[0], "control": counts[1]}
