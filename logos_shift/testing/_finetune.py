"""OpenAI-compatible files and fine-tuning jobs for the fake provider.

A job walks ``validating_files → queued → running → succeeded | failed`` on a
:class:`FineTuneSchedule`: either a fixed number of seconds per phase, or (for
deterministic tests) a number of ``GET /v1/fine_tuning/jobs/{id}`` calls per phase.
The training file is validated like the real service (JSONL, a ``messages`` list
with an assistant message per line, a minimum number of examples); a bad file
fails the job after ``validating_files`` with an ``invalid_training_file`` error.
"""

from __future__ import annotations

import copy
import email.parser
import email.policy
import json
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any

from ._common import count_tokens, new_id, now

#: ``(HTTP status, JSON-able payload or raw bytes)``.
Result = tuple[int, Any]

_PHASES = ("validating_files", "queued", "running")
_TERMINAL = ("succeeded", "failed", "cancelled")


@dataclass(frozen=True)
class FineTuneSchedule:
    """How fake fine-tuning jobs progress (captured when a job is created).

    Attributes:
        seconds_per_phase: Seconds spent in each of ``validating_files``,
            ``queued`` and ``running`` (0 finishes on the first read).
        retrieves_per_phase: When set, a job moves one phase forward every this
            many retrieve calls instead of by time (deterministic).
        outcome: ``"succeeded"`` or ``"failed"``.
        error: The job's ``error`` object when ``outcome`` is ``"failed"``.
        min_examples: Fewest training examples a file may have.
    """

    seconds_per_phase: float = 0.2
    retrieves_per_phase: int | None = None
    outcome: str = "succeeded"
    error: dict[str, Any] | None = None
    min_examples: int = 10


@dataclass
class _Job:
    obj: dict[str, Any]
    schedule: FineTuneSchedule
    started: float
    invalid: dict[str, Any] | None
    tokens: int
    phase: int = 0
    retrieves: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)


def _error(status: int, message: str, param: str | None = None) -> Result:
    return status, {
        "error": {"message": message, "type": "invalid_request_error", "param": param, "code": None}
    }


def _page(items: list[dict[str, Any]], query: dict[str, str]) -> dict[str, Any]:
    after, limit = query.get("after"), int(query.get("limit") or 20)
    if after is not None:
        ids = [item["id"] for item in items]
        items = items[ids.index(after) + 1 :] if after in ids else []
    return {"object": "list", "data": items[:limit], "has_more": len(items) > limit}


def validate_training_file(content: bytes, min_examples: int) -> tuple[dict[str, Any] | None, int]:
    """Check a chat fine-tuning JSONL file the way the real service does, roughly.

    Args:
        content: The uploaded file's bytes.
        min_examples: Fewest examples accepted.

    Returns:
        ``(error object or None, token count)``.
    """
    count = tokens = 0
    for n, line in enumerate(content.decode("utf-8", "replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            example = json.loads(line)
        except ValueError:
            return _bad(f"Line {n} is not valid JSON."), 0
        messages = example.get("messages") if isinstance(example, dict) else None
        if not isinstance(messages, list) or not messages:
            return _bad(f"Line {n} has no 'messages' list."), 0
        if not any(isinstance(m, dict) and m.get("role") == "assistant" for m in messages):
            return _bad(f"Line {n} has no assistant message."), 0
        count += 1
        tokens += count_tokens(messages)
    if count < min_examples:
        return _bad(
            f"Training file has {count} example(s), but must have at least {min_examples}."
        ), 0
    return None, tokens


def _bad(message: str) -> dict[str, Any]:
    return {"code": "invalid_training_file", "message": message, "param": "training_file"}


class FineTuneStore:
    """Thread-safe in-memory state for the files and fine-tuning endpoints."""

    def __init__(self) -> None:
        """Create an empty store with the default schedule."""
        self._lock = threading.Lock()
        self.files: dict[str, tuple[dict[str, Any], bytes]] = {}
        self.jobs: dict[str, _Job] = {}
        self.schedule = FineTuneSchedule()

    def set_schedule(self, **changes: Any) -> None:
        """Replace fields of the schedule applied to jobs created from now on.

        Args:
            **changes: :class:`FineTuneSchedule` fields.
        """
        with self._lock:
            self.schedule = replace(self.schedule, **changes)

    def served_models(self) -> list[str]:
        """Return the names of the fine-tuned models of succeeded jobs."""
        with self._lock:
            return [
                j.obj["fine_tuned_model"] for j in self.jobs.values() if j.obj["fine_tuned_model"]
            ]

    def handle(
        self, method: str, path: str, query: dict[str, str], headers: dict[str, str], raw: bytes
    ) -> Result | None:
        """Serve one files / fine-tuning request.

        Args:
            method: HTTP method.
            path: URL path without the query string.
            query: Query parameters.
            headers: Request headers (lower-case names).
            raw: Request body.

        Returns:
            ``(status, payload)``, or ``None`` when the path is not one of these endpoints.
        """
        parts = path.strip("/").split("/")[1:]  # drop the "v1"
        with self._lock:
            if parts[:1] == ["files"]:
                result = self._files(method, parts[1:], query, headers, raw)
            elif parts[:2] == ["fine_tuning", "jobs"]:
                result = self._jobs(method, parts[2:], query, raw)
            else:
                return None
            # Serialised after the lock is released, so hand out a copy.
            return result[0], copy.deepcopy(result[1])

    def _files(
        self,
        method: str,
        rest: list[str],
        query: dict[str, str],
        headers: dict[str, str],
        raw: bytes,
    ) -> Result:
        if not rest and method == "POST":
            return self._upload(headers.get("content-type", ""), raw)
        if not rest and method == "GET":
            return 200, _page([f for f, _ in reversed(self.files.values())], query)
        entry = self.files.get(rest[0]) if rest else None
        if entry is None:
            return _error(404, f"No such File object: {rest[0] if rest else ''}", "id")
        if rest[1:] == ["content"] and method == "GET":
            return 200, entry[1]
        if method == "DELETE":
            del self.files[rest[0]]
            return 200, {"id": rest[0], "object": "file", "deleted": True}
        return 200, entry[0]

    def _upload(self, content_type: str, raw: bytes) -> Result:
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + raw
        )
        fields: dict[str, tuple[str | None, bytes]] = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True)
            if isinstance(name, str) and isinstance(payload, bytes):
                fields[name] = (part.get_filename(), payload)
        if "file" not in fields or "purpose" not in fields:
            return _error(400, "Multipart form must contain 'file' and 'purpose'.")
        filename, content = fields["file"]
        obj: dict[str, Any] = {
            "id": new_id("file-"),
            "object": "file",
            "bytes": len(content),
            "created_at": now(),
            "filename": filename or "upload.jsonl",
            "purpose": fields["purpose"][1].decode(),
            "status": "processed",
            "status_details": None,
            "expires_at": None,
        }
        self.files[obj["id"]] = (obj, content)
        return 200, obj

    def _jobs(self, method: str, rest: list[str], query: dict[str, str], raw: bytes) -> Result:
        if not rest and method == "POST":
            return self._create(json.loads(raw or b"{}"))
        if not rest:
            jobs = [self._advance(j).obj for j in reversed(self.jobs.values())]
            return 200, _page(jobs, query)
        job = self.jobs.get(rest[0])
        if job is None:
            return _error(404, f"Could not find fine-tuning job {rest[0]}.", "fine_tuning_job_id")
        if rest[1:] == ["events"]:
            return 200, _page(list(reversed(self._advance(job).events)), query)
        if rest[1:] == ["cancel"] and method == "POST":
            return self._cancel(self._advance(job))
        if method == "GET" and not rest[1:]:
            job.retrieves += 1
            return 200, self._advance(job).obj
        return _error(404, f"Unknown fine-tuning endpoint {method} {'/'.join(rest)}.")

    def _create(self, body: dict[str, Any]) -> Result:
        model, training = body.get("model"), body.get("training_file")
        if not model or not training:
            return _error(
                400,
                "'model' and 'training_file' are required.",
                "model" if not model else "training_file",
            )
        if training not in self.files:
            return _error(400, f"invalid training_file: {training}", "training_file")
        schedule = self.schedule
        invalid, tokens = validate_training_file(self.files[training][1], schedule.min_examples)
        hyper = {"n_epochs": 3, "batch_size": 1, "learning_rate_multiplier": 1.0}
        hyper.update({k: v for k, v in (body.get("hyperparameters") or {}).items() if v != "auto"})
        obj = {
            "id": new_id("ftjob-"),
            "object": "fine_tuning.job",
            "created_at": now(),
            "model": model,
            "training_file": training,
            "validation_file": body.get("validation_file"),
            "hyperparameters": hyper,
            "status": "validating_files",
            "fine_tuned_model": None,
            "finished_at": None,
            "error": None,
            "organization_id": "org-fake",
            "result_files": [],
            "seed": int(body.get("seed") or 42),
            "trained_tokens": None,
            "user_provided_suffix": body.get("suffix"),
            "metadata": body.get("metadata"),
            "integrations": [],
            "method": {"type": "supervised", "supervised": {"hyperparameters": hyper}},
            "estimated_finish": None,
        }
        job = _Job(
            obj=obj, schedule=schedule, started=time.monotonic(), invalid=invalid, tokens=tokens
        )
        self.jobs[obj["id"]] = job
        self._event(job, f"Validating training file: {training}")
        return 200, dict(obj)

    def _cancel(self, job: _Job) -> Result:
        if job.obj["status"] in _TERMINAL:
            return _error(400, f"Job has already completed with status {job.obj['status']}.")
        self._finish(job, "cancelled")
        self._event(job, "Fine-tuning job cancelled.")
        return 200, job.obj

    def _event(self, job: _Job, message: str, level: str = "info") -> None:
        job.events.append(
            {
                "id": new_id("ftevent-"),
                "object": "fine_tuning.job.event",
                "created_at": now(),
                "level": level,
                "message": message,
                "data": {},
                "type": "message",
            }
        )

    def _finish(self, job: _Job, status: str, error: dict[str, Any] | None = None) -> None:
        job.phase = len(_PHASES)
        job.obj.update(status=status, finished_at=now(), error=error)

    def _advance(self, job: _Job) -> _Job:
        """Move ``job`` to the phase its schedule says it has reached by now."""
        schedule = job.schedule
        if schedule.retrieves_per_phase:
            target = job.retrieves // schedule.retrieves_per_phase
        elif schedule.seconds_per_phase > 0:
            target = int((time.monotonic() - job.started) / schedule.seconds_per_phase)
        else:
            target = len(_PHASES)
        while job.phase < min(target, len(_PHASES)) and job.obj["status"] not in _TERMINAL:
            job.phase += 1
            if job.invalid is not None:
                self._finish(job, "failed", job.invalid)
                self._event(
                    job, f"Training file validation failed: {job.invalid['message']}", "error"
                )
            elif job.phase < len(_PHASES):
                job.obj["status"] = _PHASES[job.phase]
                self._event(
                    job,
                    "Files validated, moving job to queued state"
                    if job.phase == 1
                    else "Fine-tuning job started",
                )
            elif schedule.outcome == "failed":
                error = schedule.error or {
                    "code": "server_error",
                    "message": "Fine-tuning job failed (scripted by the fake provider).",
                    "param": None,
                }
                self._finish(job, "failed", error)
                self._event(job, f"Fine-tuning job failed: {error.get('message')}", "error")
            else:
                self._finish(job, "succeeded")
                base, short = job.obj["model"], job.obj["id"].removeprefix("ftjob-")
                name = f"ft:{base}:fake:{job.obj['user_provided_suffix'] or ''}:{short}"
                job.obj.update(
                    fine_tuned_model=name,
                    trained_tokens=job.tokens * job.obj["hyperparameters"]["n_epochs"],
                )
                self._event(job, f"New fine-tuned model created: {name}")
                self._event(job, "The job has successfully completed")
        return job
