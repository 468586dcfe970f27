"""Fine-tuning backends: a small protocol and an OpenAI-compatible implementation.

:class:`OpenAICompatibleBackend` speaks OpenAI's files + ``fine_tuning.jobs`` API
through the official ``openai`` SDK with a configurable ``base_url``, so OpenAI and
compatible services (and ``logos_shift.testing.FakeProvider``) all work.  Provider
job states are mapped onto :class:`JobStatus`; :func:`wait` polls with exponential
backoff, reports progress and new events, and gives up with
:class:`FineTuneTimeout` at its deadline.  Every provider failure surfaces as a
:class:`FineTuneError` whose message says what failed, where, and the HTTP status.

What a backend answers is never reflected: error bodies are reduced to their
status (the full text goes to the debug log, for a backend the operator trusts
only), and the fields of a job that are stored and shown (id, status, model
name) must match strict patterns.  A job's error message and event messages are
kept (cleaned, shortened) only from a trusted backend; from a project-supplied
one, only the error's code and the events' levels are.
"""

from __future__ import annotations

import enum
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from logos_shift.server.outbound import AddressPolicy, http_client

__all__ = [
    "BackendFactory",
    "FineTuneBackend",
    "FineTuneError",
    "FineTuneTimeout",
    "JobEvent",
    "JobInfo",
    "JobStatus",
    "OpenAICompatibleBackend",
    "map_status",
    "wait",
]

logger = logging.getLogger("logos_shift.server.finetune")

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
_MODEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/@+-]{0,255}$")
_WORD = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]+")
_LEVELS = ("info", "warn", "warning", "error", "debug")


class FineTuneError(RuntimeError):
    """A fine-tuning backend call failed (the message says which and why)."""


class FineTuneTimeout(FineTuneError):
    """A job did not finish before the deadline."""


class JobStatus(str, enum.Enum):
    """Provider-neutral job states."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        """Whether the job can no longer change."""
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


_STATUS = {
    # OpenAI
    "validating_files": JobStatus.PENDING,
    "queued": JobStatus.PENDING,
    "running": JobStatus.RUNNING,
    "succeeded": JobStatus.SUCCEEDED,
    "failed": JobStatus.FAILED,
    "cancelled": JobStatus.CANCELLED,
    "paused": JobStatus.RUNNING,
    # Together / Fireworks style names
    "pending": JobStatus.PENDING,
    "uploading": JobStatus.RUNNING,
    "compressing": JobStatus.RUNNING,
    "completed": JobStatus.SUCCEEDED,
    "error": JobStatus.FAILED,
    "cancel_requested": JobStatus.CANCELLED,
}


def map_status(provider_status: str) -> JobStatus:
    """Map a provider's job status string onto :class:`JobStatus`.

    Args:
        provider_status: e.g. ``"validating_files"``, ``"completed"``.

    Returns:
        The neutral status; unknown strings count as ``RUNNING`` (keep polling).
    """
    return _STATUS.get(provider_status.strip().lower(), JobStatus.RUNNING)


@dataclass(frozen=True)
class JobInfo:
    """A snapshot of a fine-tuning job.

    Attributes:
        id: the provider's job id.
        status: the neutral status.
        provider_status: the provider's own status string.
        base_model: the model being fine-tuned.
        fine_tuned_model: the resulting model's name (once succeeded).
        error: why it failed, when it did.
        trained_tokens: tokens trained on, when reported.
    """

    id: str
    status: JobStatus
    provider_status: str
    base_model: str | None = None
    fine_tuned_model: str | None = None
    error: str | None = None
    trained_tokens: int | None = None

    def to_json(self) -> dict[str, Any]:
        """Return the JSON form."""
        return {
            "id": self.id,
            "status": self.status.value,
            "provider_status": self.provider_status,
            "base_model": self.base_model,
            "fine_tuned_model": self.fine_tuned_model,
            "error": self.error,
            "trained_tokens": self.trained_tokens,
        }


@dataclass(frozen=True)
class JobEvent:
    """One message from the provider's job event log."""

    id: str
    created_at: float
    level: str
    message: str


class FineTuneBackend(Protocol):
    """What the rollout service needs from a fine-tuning provider."""

    name: str

    def upload(self, content: bytes, filename: str) -> str:
        """Upload a JSONL training file; return its file id."""

    def create_job(
        self,
        base_model: str,
        training_file: str,
        validation_file: str | None = None,
        suffix: str | None = None,
        seed: int | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> JobInfo:
        """Create a supervised fine-tuning job."""

    def retrieve(self, job_id: str) -> JobInfo:
        """Return the job's current state."""

    def events(self, job_id: str, limit: int = 50) -> list[JobEvent]:
        """Return the job's events, oldest first."""

    def cancel(self, job_id: str) -> JobInfo:
        """Cancel the job."""

    def close(self) -> None:
        """Release connections."""


def _clean(text: Any, limit: int = 300) -> str:
    """A backend's free text, safe to store and show: no control characters, bounded."""
    out = _CONTROL.sub(" ", str(text)).strip()
    return out if len(out) <= limit else out[: limit - 1] + "…"


def _word(value: Any, pattern: re.Pattern[str] = _WORD) -> str | None:
    return value if isinstance(value, str) and pattern.match(value) else None


def _job_info(job: Any, trusted: bool) -> JobInfo:
    job_id = _word(getattr(job, "id", None), _ID)
    if job_id is None:
        raise FineTuneError("the backend answered a job without a valid id")
    err = getattr(job, "error", None)
    message = None
    code = _word(getattr(err, "code", None)) if err is not None else None
    if err is not None and trusted:
        text = getattr(err, "message", None) or ""
        message = _clean(f"{code}: {text}" if code else text) or "the job failed"
    elif err is not None and (code or getattr(err, "message", None)):
        message = f"{code}" if code else "the job failed at the backend"
    status = _word(str(getattr(job, "status", "") or "").lower()) or "unknown"
    tokens = getattr(job, "trained_tokens", None)
    return JobInfo(
        id=job_id,
        status=map_status(status),
        provider_status=status,
        base_model=_word(getattr(job, "model", None), _MODEL),
        fine_tuned_model=_word(getattr(job, "fine_tuned_model", None), _MODEL),
        error=message,
        trained_tokens=tokens if isinstance(tokens, int) and not isinstance(tokens, bool) else None,
    )


class OpenAICompatibleBackend:
    """Fine-tuning through the official openai SDK against any compatible API.

    Example::

        backend = OpenAICompatibleBackend(base_url="http://localhost:9000/v1", api_key="k")
        file_id = backend.upload(dataset.jsonl(), "train.jsonl")
        job = backend.create_job("gpt-4o-mini", file_id, suffix="support")
    """

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 2,
        *,
        name: str | None = None,
        policy: AddressPolicy | None = None,
        trusted: bool = True,
    ) -> None:
        """Create the SDK client.

        Args:
            base_url: the API root (``None`` = OpenAI, or ``$OPENAI_BASE_URL``).
            api_key: the provider key (``None`` = ``$OPENAI_API_KEY``).
            timeout: seconds per HTTP request.
            max_retries: the SDK's own retries per request.
            name: how messages name the backend (default: its host).
            policy: the address policy every connection must pass (a project-supplied
                URL); None for a backend the operator configured.
            trusted: keep (cleaned) job error and event texts, and log error bodies
                at debug level; False for a project-supplied backend.

        Raises:
            FineTuneError: the openai package is missing or no key is available.
        """
        try:
            import openai
        except ImportError as exc:  # pragma: no cover - openai is a dev dependency
            raise FineTuneError("the openai package is required: pip install openai") from exc
        self._openai = openai
        self._trusted = trusted
        http = http_client(policy, timeout_s=timeout, openai_sdk=True)
        try:
            self._client = openai.OpenAI(
                base_url=base_url,
                api_key=api_key,
                timeout=timeout,
                max_retries=max_retries,
                http_client=http,
            )
        except openai.OpenAIError as exc:
            http.close()
            raise FineTuneError("cannot create the fine-tuning client (no API key?)") from exc
        self.name = name or f"backend {self._client.base_url.host}"

    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except self._openai.APITimeoutError as exc:
            raise FineTuneError(f"{what} timed out at {self.name}") from exc
        except self._openai.APIConnectionError as exc:
            refused = _refusal(exc)
            if refused:
                raise FineTuneError(f"{what} failed: {self.name} is refused: {refused}") from exc
            raise FineTuneError(f"{what} failed: cannot reach {self.name}") from exc
        except self._openai.APIStatusError as exc:
            if self._trusted:
                logger.debug("%s failed at %s: %s", what, self.name, _clean(exc.message, 2000))
            raise FineTuneError(f"{what} failed at {self.name}: HTTP {exc.status_code}") from exc
        except self._openai.OpenAIError as exc:
            if self._trusted:
                logger.debug("%s failed at %s: %s", what, self.name, _clean(exc, 2000))
            raise FineTuneError(f"{what} failed at {self.name}: an invalid answer") from exc

    def upload(self, content: bytes, filename: str) -> str:
        """Upload a JSONL file with ``purpose="fine-tune"``.

        Args:
            content: the JSONL bytes.
            filename: the name shown by the provider.

        Returns:
            The file id.

        Raises:
            FineTuneError: the upload failed.
        """
        f = self._call(
            "file upload",
            lambda: self._client.files.create(file=(filename, content), purpose="fine-tune"),
        )
        return str(f.id)

    def create_job(
        self,
        base_model: str,
        training_file: str,
        validation_file: str | None = None,
        suffix: str | None = None,
        seed: int | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> JobInfo:
        """Create a fine-tuning job.

        Args:
            base_model: the model to fine-tune.
            training_file: the uploaded training file id.
            validation_file: an uploaded validation file id.
            suffix: added to the model name (at most 64 characters).
            seed: the training seed.
            metadata: up to 16 string key/values.

        Returns:
            The job's first state.

        Raises:
            FineTuneError: the provider refused the job.
        """
        kwargs: dict[str, Any] = {"model": base_model, "training_file": training_file}
        if validation_file:
            kwargs["validation_file"] = validation_file
        if suffix:
            kwargs["suffix"] = suffix[:64]
        if seed is not None:
            kwargs["seed"] = seed
        if metadata:
            kwargs["metadata"] = dict(list(metadata.items())[:16])
        job = self._call("job creation", lambda: self._client.fine_tuning.jobs.create(**kwargs))
        return _job_info(job, self._trusted)

    def retrieve(self, job_id: str) -> JobInfo:
        """Return a job's state.

        Args:
            job_id: the job id.

        Returns:
            The job.

        Raises:
            FineTuneError: the provider could not be asked.
        """
        job = self._call("job status", lambda: self._client.fine_tuning.jobs.retrieve(job_id))
        return _job_info(job, self._trusted)

    def events(self, job_id: str, limit: int = 50) -> list[JobEvent]:
        """Return a job's events, oldest first.

        Args:
            job_id: the job id.
            limit: most events to fetch (the newest ones).

        Returns:
            The events.

        Raises:
            FineTuneError: the provider could not be asked.
        """
        page = self._call(
            "job events",
            lambda: self._client.fine_tuning.jobs.list_events(job_id, limit=limit),
        )
        # OpenAI lists newest first; reverse, then a stable sort by time keeps the
        # provider's order among events created in the same second.
        items = []
        for e in reversed(page.data):
            level = str(getattr(e, "level", "") or "info").lower()
            level = level if level in _LEVELS else "info"
            try:
                created = float(e.created_at)
            except (TypeError, ValueError):
                created = 0.0
            message = _clean(e.message) if self._trusted else f"{level} event from the backend"
            items.append(JobEvent(_clean(e.id, 128), created, level, message))
        return sorted(items, key=lambda e: e.created_at)

    def cancel(self, job_id: str) -> JobInfo:
        """Cancel a job.

        Args:
            job_id: the job id.

        Returns:
            The job after cancellation.

        Raises:
            FineTuneError: the provider refused.
        """
        return _job_info(
            self._call("job cancel", lambda: self._client.fine_tuning.jobs.cancel(job_id)),
            self._trusted,
        )

    def close(self) -> None:
        """Close the SDK's HTTP connections."""
        self._client.close()


def wait(
    backend: FineTuneBackend,
    job_id: str,
    timeout_s: float,
    on_progress: Callable[[JobInfo, list[JobEvent]], None] | None = None,
    initial_poll_s: float = 0.5,
    max_poll_s: float = 30.0,
    max_consecutive_errors: int = 5,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> JobInfo:
    """Poll a job until it ends, with exponential backoff (x1.5, capped).

    Args:
        backend: the backend.
        job_id: the job.
        timeout_s: give up after this many seconds.
        on_progress: called after every poll with the job and its new events.
        initial_poll_s: first delay between polls.
        max_poll_s: largest delay between polls.
        max_consecutive_errors: provider errors tolerated in a row before giving up.
        sleep: the sleep function (injectable for tests).
        clock: the monotonic clock (injectable for tests).

    Returns:
        The job in a terminal state.

    Raises:
        FineTuneTimeout: the deadline passed first.
        FineTuneError: the provider kept failing.
    """
    deadline = clock() + timeout_s
    delay = initial_poll_s
    seen: set[str] = set()
    errors = 0
    while True:
        try:
            job = backend.retrieve(job_id)
            fresh = [e for e in backend.events(job_id) if e.id not in seen]
            errors = 0
        except FineTuneError:
            errors += 1
            if errors >= max_consecutive_errors:
                raise
        else:
            seen.update(e.id for e in fresh)
            if on_progress is not None:
                on_progress(job, fresh)
            if job.status.terminal:
                return job
        remaining = deadline - clock()
        if remaining <= 0:
            raise FineTuneTimeout(
                f"fine-tuning job {job_id} did not finish within {timeout_s:g}s; "
                "it may still be running at the provider"
            )
        sleep(min(delay, remaining))
        delay = min(delay * 1.5, max_poll_s)


#: ``factory(base_url, api_key) -> backend``: an operator's own backend construction.
BackendFactory = Callable[[str | None, str | None], FineTuneBackend]


def _refusal(exc: BaseException) -> str | None:
    """The outbound policy's own message when a connection was refused by it."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return None
        if getattr(seen, "logos_refused", False):
            return str(seen)
        seen = seen.__cause__ or seen.__context__
    return None
