"""Fine-tuning backends: a small protocol and an OpenAI-compatible implementation.

:class:`OpenAICompatibleBackend` speaks OpenAI's files + ``fine_tuning.jobs`` API
through the official ``openai`` SDK with a configurable ``base_url``, so OpenAI and
compatible services (and ``logos_shift.testing.FakeProvider``) all work.  Provider
job states are mapped onto :class:`JobStatus`; :func:`wait` polls with exponential
backoff, reports progress and new events, and gives up with
:class:`FineTuneTimeout` at its deadline.  Every provider failure surfaces as a
:class:`FineTuneError` whose message says what failed and why.
"""

from __future__ import annotations

import enum
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = [
    "BackendFactory",
    "FineTuneBackend",
    "FineTuneError",
    "FineTuneTimeout",
    "JobEvent",
    "JobInfo",
    "JobStatus",
    "OpenAICompatibleBackend",
    "default_backend",
    "map_status",
    "wait",
]


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


def _job_info(job: Any) -> JobInfo:
    err = getattr(job, "error", None)
    message = None
    if err is not None:
        message = getattr(err, "message", None) or str(err)
        code = getattr(err, "code", None)
        if code:
            message = f"{code}: {message}"
    status = str(getattr(job, "status", "") or "")
    return JobInfo(
        id=str(job.id),
        status=map_status(status),
        provider_status=status,
        base_model=getattr(job, "model", None),
        fine_tuned_model=getattr(job, "fine_tuned_model", None) or None,
        error=message,
        trained_tokens=getattr(job, "trained_tokens", None),
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
    ) -> None:
        """Create the SDK client.

        Args:
            base_url: the API root (``None`` = OpenAI, or ``$OPENAI_BASE_URL``).
            api_key: the provider key (``None`` = ``$OPENAI_API_KEY``).
            timeout: seconds per HTTP request.
            max_retries: the SDK's own retries per request.

        Raises:
            FineTuneError: the openai package is missing or no key is available.
        """
        try:
            import openai
        except ImportError as exc:  # pragma: no cover - openai is a dev dependency
            raise FineTuneError("the openai package is required: pip install openai") from exc
        self._openai = openai
        try:
            self._client = openai.OpenAI(
                base_url=base_url, api_key=api_key, timeout=timeout, max_retries=max_retries
            )
        except openai.OpenAIError as exc:
            raise FineTuneError(f"cannot create the fine-tuning client: {exc}") from exc
        self.name = str(self._client.base_url)

    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except self._openai.APITimeoutError as exc:
            raise FineTuneError(f"{what} timed out at {self.name}: {exc}") from exc
        except self._openai.APIConnectionError as exc:
            raise FineTuneError(f"{what} failed: cannot reach {self.name} ({exc})") from exc
        except self._openai.APIStatusError as exc:
            raise FineTuneError(
                f"{what} failed at {self.name}: HTTP {exc.status_code}: {exc.message}"
            ) from exc
        except self._openai.OpenAIError as exc:
            raise FineTuneError(f"{what} failed at {self.name}: {exc}") from exc

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
        return _job_info(job)

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
        return _job_info(job)

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
        items = [
            JobEvent(str(e.id), float(e.created_at), str(e.level), str(e.message))
            for e in reversed(page.data)
        ]
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
            self._call("job cancel", lambda: self._client.fine_tuning.jobs.cancel(job_id))
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


BackendFactory = Callable[[str | None, str | None], FineTuneBackend]


def default_backend(url: str | None, key: str | None) -> FineTuneBackend:
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
    return OpenAICompatibleBackend(base_url=url, api_key=key or "not-set")
