"""Tests of `logos-shift finetune start` and `logos-shift rollout …` against a real server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from logos_shift.cli import main
from logos_shift.testing import FakeProvider
from tests.server.rollout.support import Server, call, feedback


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
        "fake",
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
        "fake",
        *_args(server),
    ]
    assert main(argv) == 0
    capsys.readouterr()
    assert main(["rollout", "status", "support", *_args(server)]) == 0
    out = capsys.readouterr().out
    assert "route support: canary, 1% on ft:m:fake:support" in out
    # In the first srm_grace_s (180 s) of a stage nothing is counted; the line says so.
    assert "sample-ratio check (this stage): starts in 3 min (the first 180 s of a stage" in out
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
        "fake",
        *_args(server),
    ]
    assert main(argv) == 1
    assert "only" in capsys.readouterr().err


def test_finetune_start_time_window(
    server: Server, fake_provider: FakeProvider, capsys: pytest.CaptureFixture[str]
) -> None:
    """--since / --until (ISO or Unix seconds) select the calls; a bad value exits 2."""
    _seed(server)
    fake_provider.finetune_schedule(seconds_per_phase=0)
    argv = ["finetune", "start", "--dataset", "support", "--base-model", "m", "--no-wait",
            "--backend", "fake"]  # fmt: skip
    argv += _args(server)
    assert main([*argv, "--until", "2020-01-01T00:00:00Z"]) == 1
    assert "no calls of this dataset in the time range asked for" in capsys.readouterr().err
    assert main([*argv, "--since", "1577836800", "--until", "4102444800"]) == 0
    assert "job ftjob-" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--since", "yesterday"])
    assert exit_info.value.code == 2
    assert "'yesterday': Unix seconds or must be an ISO-8601" in capsys.readouterr().err


def test_unreachable_server(capsys: pytest.CaptureFixture[str]) -> None:
    """An unreachable server is a clear error, not a traceback."""
    assert main(["rollout", "status", "r", "--server", "http://127.0.0.1:9", "--api-key", "x"]) == 1
    assert "cannot reach the server" in capsys.readouterr().err


def test_failures_of_a_rolled_back_model_feed_the_next_finetune(
    server: Server, fake_provider: FakeProvider, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """`rollout failures` lists and exports what the rolled-back model failed; the next
    `finetune start` reports how many of those inputs it up-weights."""
    _seed(server)
    fake_provider.finetune_schedule(seconds_per_phase=0)
    start = ["finetune", "start", "--dataset", "support", "--base-model", "m", "--backend",
             "fake", *_args(server)]  # fmt: skip
    assert main(start) == 0
    variant = server.get("/v1/config", key=server.ingest_key).json()["routes"]["support"]
    name = variant["variants"][0]["name"]
    recs = []
    for i in range(3):
        c = call(f"question {i}", "wrong", route="support", variant=name)
        recs += [c, feedback(c["id"], "failure")]
    c = call("brand new question", "wrong", route="support", variant=name)
    recs += [c, feedback(c["id"], "failure")]
    server.ingest(recs)
    assert main(["rollout", "rollback", "support", *_args(server)]) == 0
    assert "kept 4 failed calls of ft:m:fake:support" in capsys.readouterr().out
    assert main(["rollout", "status", "support", *_args(server)]) == 0
    assert "kept 4 failed calls of the rolled-back model" in capsys.readouterr().out
    out_file = tmp_path / "failures.jsonl"
    argv = ["rollout", "failures", "support", "--output", str(out_file), *_args(server)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "4 failed calls of rolled-back models kept (4 distinct inputs, 1 without" in out
    assert "NEEDS ANSWER brand new question" in out
    assert out.count(" answered ") == 3
    rows = [json.loads(x) for x in out_file.read_text().splitlines()]
    assert sorted(r["input"]["messages"][-1]["content"] for r in rows) == [
        "brand new question", "question 0", "question 1", "question 2"]  # fmt: skip
    assert main(start) == 0
    out = capsys.readouterr().out
    assert "4 inputs a rolled-back model failed on: 3 have a good answer" in out
    assert "1 have none yet" in out


def test_a_route_without_rollout_points_to_the_cli_command(
    server: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    """`rollout status` of a route that has no rollout names the `finetune start` command."""
    assert main(["rollout", "status", "support", *_args(server)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(
        "error: route 'support' has no rollout yet; start one with: logos-shift finetune start "
        "--dataset DATASET --base-model MODEL --route support"
    )
    assert "POST /v1/finetune" not in err


def test_an_unknown_dataset_is_named_with_the_known_ones(
    server: Server, fake_provider: FakeProvider, capsys: pytest.CaptureFixture[str]
) -> None:
    """`finetune start --dataset` with a typo says the dataset has no calls and lists the
    datasets there are, instead of "only 0 training examples"."""
    _seed(server, n=3)
    argv = ["finetune", "start", "--dataset", "suport", "--base-model", "m",
            "--backend", "fake", *_args(server)]  # fmt: skip
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err == (
        "error: HTTP 404: dataset 'suport' has no calls in this project; known datasets: support\n"
    )


def test_a_rejected_dataset_prints_each_problem_once(
    server: Server, fake_provider: FakeProvider, capsys: pytest.CaptureFixture[str]
) -> None:
    """The 422 of a too-small dataset shows its message once, not again as details."""
    _seed(server, n=3)
    argv = ["finetune", "start", "--dataset", "support", "--base-model", "m",
            "--backend", "fake", *_args(server)]  # fmt: skip
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("only 3 training examples") == 1, err


def test_a_long_job_shows_progress(
    server: Server, fake_provider: FakeProvider, capsys: pytest.CaptureFixture[str]
) -> None:
    """While the job trains for more than a second, `finetune start` says it is waiting."""
    _seed(server)
    fake_provider.finetune_schedule(seconds_per_phase=0.8)
    argv = ["finetune", "start", "--dataset", "support", "--base-model", "m",
            "--backend", fake_provider.openai_base_url, "--backend-api-key", "k",
            *_args(server)]  # fmt: skip
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "waiting for the fine-tuning job: training (" in err


def test_the_sample_ratio_line_says_when_counting_starts() -> None:
    """In a stage's grace period the line says when the check starts and why; after it, the
    counts per arm."""
    from logos_shift.cli.rollout import srm_line

    data = {
        "policy": {"srm_grace_s": 180},
        "srm_window": {"since": 1000.0, "units": None, "calls": None},
    }
    assert srm_line(data, now=950.0) == (
        "  sample-ratio check (this stage): starts in 50 s (the first 180 s of a stage are "
        "left out: clients move to the new share at their next refresh)"
    )
    data["srm_window"] = {
        "since": 1000.0,
        "units": {"variant": 3, "control": 40},
        "calls": {"variant": 9, "control": 80},
    }
    assert srm_line(data, now=1100.0) == (
        "  sample-ratio check (this stage): 3 variant / 40 control units (9 / 80 calls)"
    )
