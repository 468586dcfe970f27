"""`logos-shift` as a user runs it: a real process, the local JSONL copy, no server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import logos_shift


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "logos_shift", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_help_lists_every_subcommand(tmp_path: Path) -> None:
    """`python -m logos_shift --help` lists the client and server subcommands."""
    result = _run("--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for command in ("server", "keys", "migrate", "export", "finetune", "rollout"):
        assert command in result.stdout


def test_export_from_a_local_copy_written_by_a_real_instance(tmp_path: Path) -> None:
    """A JSONL copy written by LogosShift exports with its feedback joined, no server needed."""
    path = tmp_path / "calls.jsonl"
    ls = logos_shift.LogosShift(filename=str(path))

    @ls(dataset="demo")
    def double(x: int) -> int:
        return 2 * x

    double(2)
    ls.provide_feedback(logos_shift.last_call_id() or "", "success")
    double(3)
    assert ls.shutdown()
    result = _run(
        "export", "--from", str(path), "--format", "raw", "--outcome", "success", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    exported = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["output"] for r in exported] == [4]
    assert "exported 1 of 2 calls" in result.stderr


def test_export_of_a_missing_file_fails_with_a_message(tmp_path: Path) -> None:
    """A missing source file exits 2 and names the file, without a traceback."""
    result = _run("export", "--from", str(tmp_path / "nope.jsonl"), cwd=tmp_path)
    assert result.returncode == 2
    assert "cannot read" in result.stderr
    assert "Traceback" not in result.stderr
