"""Files and fine-tuning jobs of the fake provider, through the real openai SDK."""

from __future__ import annotations

import openai
import pytest

from logos_shift.testing import FakeProvider
from tests.testing.clients import (
    USER,
    oai,
    training_jsonl,
)


def test_finetune_lifecycle_by_retrievals(fake_provider: FakeProvider) -> None:
    """A job moves one phase per retrieval to succeeded, and its fine-tuned model is served."""
    fake_provider.finetune_schedule(retrieves_per_phase=1)
    with oai(fake_provider) as client:
        upload = client.files.create(file=("train.jsonl", training_jsonl()), purpose="fine-tune")
        assert upload.id.startswith("file-")
        assert upload.filename == "train.jsonl"
        assert client.files.retrieve(upload.id).bytes == len(training_jsonl())
        job = client.fine_tuning.jobs.create(model="gpt-base", training_file=upload.id, suffix="s")
        statuses = [job.status] + [
            client.fine_tuning.jobs.retrieve(job.id).status for _ in range(4)
        ]
        final = client.fine_tuning.jobs.retrieve(job.id)
        events = [e.message for e in client.fine_tuning.jobs.list_events(job.id)]
        listed = [j.id for j in client.fine_tuning.jobs.list()]
        assert final.fine_tuned_model is not None
        served = client.chat.completions.create(model=final.fine_tuned_model, messages=USER)
    assert job.id.startswith("ftjob-")
    assert statuses == ["validating_files", "queued", "running", "succeeded", "succeeded"]
    assert final.fine_tuned_model == f"ft:gpt-base:fake:s:{job.id.removeprefix('ftjob-')}"
    assert final.trained_tokens == 20 * 3
    assert final.finished_at is not None
    assert events[0] == "The job has successfully completed"  # newest first
    assert listed == [job.id]
    assert served.model == final.fine_tuned_model
    assert fake_provider.file_content(upload.id) == training_jsonl()
    assert fake_provider.fine_tuned_models() == [final.fine_tuned_model]


def test_finetune_time_schedule_zero_finishes_at_first_read(fake_provider: FakeProvider) -> None:
    """With ``seconds_per_phase=0`` a job has succeeded by its first retrieval."""
    fake_provider.finetune_schedule(seconds_per_phase=0)
    with oai(fake_provider) as client:
        upload = client.files.create(file=("t.jsonl", training_jsonl()), purpose="fine-tune")
        job = client.fine_tuning.jobs.create(model="b", training_file=upload.id)
        assert client.fine_tuning.jobs.retrieve(job.id).status == "succeeded"


def test_finetune_scripted_failure_and_bad_file(fake_provider: FakeProvider) -> None:
    """A scripted failure ends the job failed with its error; a too-small file fails validation."""
    error = {"code": "quota", "message": "no quota", "param": None}
    fake_provider.finetune_schedule(retrieves_per_phase=1, outcome="failed", error=error)
    with oai(fake_provider) as client:
        good = client.files.create(file=("t.jsonl", training_jsonl()), purpose="fine-tune")
        small = client.files.create(file=("s.jsonl", training_jsonl(3)), purpose="fine-tune")
        job = client.fine_tuning.jobs.create(model="b", training_file=good.id)
        bad = client.fine_tuning.jobs.create(model="b", training_file=small.id)
        for _ in range(3):
            failed = client.fine_tuning.jobs.retrieve(job.id)
        invalid = client.fine_tuning.jobs.retrieve(bad.id)
    assert failed.status == "failed"
    assert failed.fine_tuned_model is None
    assert failed.error is not None
    assert failed.error.message == "no quota"
    assert invalid.status == "failed"
    assert invalid.error is not None
    assert invalid.error.code == "invalid_training_file"


def test_finetune_cancel_and_unknown_ids(fake_provider: FakeProvider) -> None:
    """Cancel stops a running job (twice is a 400); unknown files and jobs are 400 / 404."""
    fake_provider.finetune_schedule(retrieves_per_phase=100)
    with oai(fake_provider) as client:
        upload = client.files.create(file=("t.jsonl", training_jsonl()), purpose="fine-tune")
        job = client.fine_tuning.jobs.create(model="b", training_file=upload.id)
        assert client.fine_tuning.jobs.cancel(job.id).status == "cancelled"
        with pytest.raises(openai.BadRequestError):
            client.fine_tuning.jobs.cancel(job.id)
        with pytest.raises(openai.BadRequestError):
            client.fine_tuning.jobs.create(model="b", training_file="file-missing")
        with pytest.raises(openai.NotFoundError):
            client.fine_tuning.jobs.retrieve("ftjob-missing")
        with pytest.raises(openai.NotFoundError):
            client.files.retrieve("file-missing")


def test_finetune_path_script_fails_upload(fake_provider: FakeProvider) -> None:
    """A script with ``path="/v1/files"`` makes the upload fail with a 500."""
    fake_provider.script(status=500, path="/v1/files")
    with oai(fake_provider) as client, pytest.raises(openai.InternalServerError):
        client.files.create(file=("t.jsonl", training_jsonl()), purpose="fine-tune")
