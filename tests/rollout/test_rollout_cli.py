"""Tests of `logos-shift finetune start` and `logos-shift rollout …` against a real server."""

from __future__ import annotations

import json

import pytest
from conftest import Server, call, feedback

from logos_shift.cli import main
from logos_shift.testing import FakeProvider


def _seed(server: Server, n: int = 40) -> None:
    calls = [call(f"question {i}", f"Echo: question {i}") for i in range(n)]
    server.ingest(calls + [feedback(c["id"], "success") for c in calls])


def _args(server: Server) -> list[str]:
    return ["--server", server.url, "--api-key", server.admin]


def test_finetune_start_shows_progress_until_canary(
    server: Server, fake_provider: FakeProvider, capsys: pytest.CaptureFixture[str]
) -> None:
    """`finetune start` prints the dataset, the job's progress and ends with the canary."""
    _seed(server)
    fake_provider.finetune_schedule(seconds_per_phase=0.05)
    policy = json.dumps({"stages": [0.1, 1.0]})
    argv = [
        "finetune",
        "start",
        "--dataset",
        "support",
        "--base-model",
        "gpt-4o-mini",
        "--backend",
        fake_provider.openai_base_url,
        "--backend-api-key",
        "k",
        "--policy",
        policy,
        *_args(server),
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "train /" in out
    assert "job succeeded" in out
    assert "New fine-tuned model created" in out
    assert "start_canary: training -> canary (10% on the variant)" in out
    assert "rollout of 'support' is canary" in out


def test_rollout_commands(
    server: Server, fake_provider: FakeProvider, capsys: pytest.CaptureFixture[str]
) -> None:
    """status, pause, resume, promote and rollback work; a bad transition exits 1 saying why."""
    _seed(server)
    fake_provider.finetune_schedule(seconds_per_phase=0)
    argv = [
        "finetune",
        "start",
        "--dataset",
        "support",
        "--base-model",
        "m",
        "--backend",
        fake_provider.openai_base_url,
        "--backend-api-key",
        "k",
        *_args(server),
    ]
    assert main(argv) == 0
    capsys.readouterr()
    assert main(["rollout", "status", "support", *_args(server)]) == 0
    out = capsys.readouterr().out
    assert "route support: canary, 1% on ft:m:fake:support" in out
    assert "control" in out
    assert main(["rollout", "pause", "support", *_args(server)]) == 0
    assert "now paused" in capsys.readouterr().out
    assert main(["rollout", "pause", "support", *_args(server)]) == 1
    assert "cannot pause" in capsys.readouterr().err
    assert main(["rollout", "resume", "support", *_args(server)]) == 0
    assert main(["rollout", "promote", "support", *_args(server)]) == 0
    assert main(["rollout", "rollback", "support", *_args(server)]) == 0
    assert "now rolled_back" in capsys.readouterr().out


def test_finetune_start_small_dataset_lists_problems(
    server: Server, fake_provider: FakeProvider, capsys: pytest.CaptureFixture[str]
) -> None:
    """A too-small dataset exits 1 with the server's explanation."""
    _seed(server, n=3)
    argv = [
        "finetune",
        "start",
        "--dataset",
        "support",
        "--base-model",
        "m",
        "--backend",
        fake_provider.openai_base_url,
        *_args(server),
    ]
    assert main(argv) == 1
    assert "only" in capsys.readouterr().err


def test_unreachable_server(capsys: pytest.CaptureFixture[str]) -> None:
    """An unreachable server is a clear error, not a traceback."""
    assert main(["rollout", "status", "r", "--server", "http://127.0.0.1:9", "--api-key", "x"]) == 1
    assert "cannot reach the server" in capsys.readouterr().err
