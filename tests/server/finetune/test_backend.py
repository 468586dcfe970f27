"""Tests of the OpenAI-compatible fine-tuning backend against the fake provider over a socket."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from logos_shift.server.finetune import backend as ft
from logos_shift.server.finetune.backend import FineTuneError, FineTuneTimeout, JobStatus
from logos_shift.testing import FakeProvider

LINE = b'{"messages":[{"role":"user","content":"q"},{"role":"assistant","content":"a"}]}\n'


def _backend(fp: FakeProvider, **kw: Any) -> ft.OpenAICompatibleBackend:
    return ft.OpenAICompatibleBackend(base_url=fp.openai_base_url, api_key="test", **kw)


def test_full_job_lifecycle(fake_provider: FakeProvider) -> None:
    """Upload, create, poll with events until succeeded, and store the fine-tuned model name."""
    fake_provider.finetune_schedule(retrieves_per_phase=1)
    backend = _backend(fake_provider)
    try:
        file_id = backend.upload(LINE * 12, "train.jsonl")
        assert fake_provider.file_content(file_id) == LINE * 12
        job = backend.create_job(
            "gpt-4o-mini", file_id, suffix="support", seed=1, metadata={"route": "support"}
        )
        assert job.status == JobStatus.PENDING
        seen: list[tuple[str, int]] = []
        done = ft.wait(
            backend,
            job.id,
            30,
            lambda j, ev: seen.append((j.provider_status, len(ev))),
            initial_poll_s=0.0,
            sleep=lambda s: None,
        )
    finally:
        backend.close()
    assert done.status == JobStatus.SUCCEEDED
    assert done.fine_tuned_model in fake_provider.fine_tuned_models()
    assert "support" in (done.fine_tuned_model or "")
    statuses = [s for s, _ in seen]
    assert "running" in statuses
    assert statuses[-1] == "succeeded"
    assert sum(n for _, n in seen) >= 3


def test_failed_job_reports_why(fake_provider: FakeProvider) -> None:
    """A job the provider fails ends FAILED with the provider's error message."""
    fake_provider.finetune_schedule(
        seconds_per_phase=0, outcome="failed", error={"code": "boom", "message": "GPU on fire"}
    )
    backend = _backend(fake_provider)
    try:
        job = backend.create_job("gpt-4o-mini", backend.upload(LINE * 12, "t.jsonl"))
        done = ft.wait(backend, job.id, 10, sleep=lambda s: None)
    finally:
        backend.close()
    assert done.status == JobStatus.FAILED
    assert done.error == "boom: GPU on fire"
    assert done.fine_tuned_model is None


def test_invalid_file_fails_validation(fake_provider: FakeProvider) -> None:
    """A training file the provider rejects fails the job with invalid_training_file."""
    fake_provider.finetune_schedule(seconds_per_phase=0)
    backend = _backend(fake_provider)
    try:
        job = backend.create_job("gpt-4o-mini", backend.upload(LINE * 2, "t.jsonl"))
        done = ft.wait(backend, job.id, 10, sleep=lambda s: None)
    finally:
        backend.close()
    assert done.status == JobStatus.FAILED
    assert "invalid_training_file" in (done.error or "")


def test_timeout_raises_clear_error(fake_provider: FakeProvider) -> None:
    """A job that does not finish before the deadline raises FineTuneTimeout naming the job."""
    fake_provider.finetune_schedule(retrieves_per_phase=1000)
    backend = _backend(fake_provider)
    clock = iter(range(0, 10_000, 5))
    try:
        job = backend.create_job("gpt-4o-mini", backend.upload(LINE * 12, "t.jsonl"))
        with pytest.raises(FineTuneTimeout, match=job.id):
            ft.wait(backend, job.id, 20, sleep=lambda s: None, clock=lambda: float(next(clock)))
        cancelled = backend.cancel(job.id)
    finally:
        backend.close()
    assert cancelled.status == JobStatus.CANCELLED


def test_unreachable_backend_is_a_clear_error() -> None:
    """A backend nobody listens on gives a FineTuneError saying it cannot be reached."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    backend = ft.OpenAICompatibleBackend(
        base_url=f"http://127.0.0.1:{port}/v1", api_key="k", max_retries=0, timeout=2
    )
    try:
        with pytest.raises(FineTuneError, match="cannot reach"):
            backend.upload(LINE, "t.jsonl")
    finally:
        backend.close()


def test_provider_refusal_is_a_clear_error(fake_provider: FakeProvider) -> None:
    """An HTTP error from the provider (unknown file) becomes a FineTuneError with its status."""
    backend = _backend(fake_provider, max_retries=0)
    try:
        with pytest.raises(FineTuneError, match=r"job creation failed .*HTTP 4"):
            backend.create_job("gpt-4o-mini", "file-does-not-exist")
    finally:
        backend.close()


def test_wait_gives_up_after_repeated_errors() -> None:
    """Polling tolerates transient errors but raises after too many in a row."""

    class Flaky:
        name = "flaky"
        calls = 0

        def retrieve(self, job_id: str) -> ft.JobInfo:
            self.calls += 1
            raise FineTuneError("job status failed: HTTP 503")

        def events(self, job_id: str, limit: int = 50) -> list[ft.JobEvent]:
            return []

    flaky = Flaky()
    with pytest.raises(FineTuneError, match="503"):
        ft.wait(flaky, "j", 100, max_consecutive_errors=3, sleep=lambda s: None)  # type: ignore[arg-type]
    assert flaky.calls == 3


def test_status_mapping() -> None:
    """OpenAI and Together style states map onto one enum; unknown states keep polling."""
    assert ft.map_status("validating_files") == JobStatus.PENDING
    assert ft.map_status("completed") == JobStatus.SUCCEEDED
    assert ft.map_status("ERROR") == JobStatus.FAILED
    assert ft.map_status("something_new") == JobStatus.RUNNING
    assert JobStatus.CANCELLED.terminal
    assert not JobStatus.RUNNING.terminal
