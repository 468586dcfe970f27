"""`logos-shift` as a user runs it: a real process, the local JSONL copy, no server."""

from __future__ import annotations

import argparse
import importlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import logos_shift
from logos_shift.cli import build_parser


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


def _walk(parser: argparse.ArgumentParser, path: str = "logos-shift") -> Iterator[tuple[str, Any]]:
    """Yield ``(command path, parser)`` for the parser and every subcommand under it."""
    yield path, parser
    for action in parser._actions:  # argparse keeps subparsers here and nowhere public
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _walk(sub, f"{path} {name}")


def test_every_option_and_command_has_help() -> None:
    """Every option and positional argument of every command says what it is for."""
    missing = []
    for path, parser in _walk(build_parser()):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for choice in action._choices_actions:
                    if not choice.help:
                        missing.append(f"{path} {choice.dest}")
                continue
            if not action.help or action.help == argparse.SUPPRESS:
                missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}")
    assert missing == []


#: Commands whose output is not a document: `server` runs until stopped; `export` writes
#: JSONL already (its --json is the summary on stderr).
_NO_JSON_OUTPUT = {"logos-shift server"}


def test_every_command_has_json_output() -> None:
    """Every leaf command that prints data takes --json (see _NO_JSON_OUTPUT for why not)."""
    lacking = []
    for path, parser in _walk(build_parser()):
        if any(isinstance(a, argparse._SubParsersAction) for a in parser._actions):
            continue  # a group, not a command
        if path in _NO_JSON_OUTPUT:
            continue
        if not any("--json" in a.option_strings for a in parser._actions):
            lacking.append(path)
    assert lacking == []


def test_version() -> None:
    """`--version` prints the installed version and exits 0."""
    result = _run("--version", cwd=Path.cwd())
    assert result.returncode == 0
    assert result.stdout.strip().startswith(f"logos-shift {logos_shift.__version__} (Python ")


def test_registration_is_one_line_per_module() -> None:
    """Each module named in COMMANDS registers its commands; no other discovery happens."""
    from logos_shift import cli

    for name in cli.COMMANDS:
        module = importlib.import_module(f"logos_shift.cli.{name}")
        assert callable(module.register)


def test_a_closed_pipe_ends_the_command_quietly(tmp_path: Path) -> None:
    """`logos-shift export ... | head -1` ends without a BrokenPipeError traceback."""
    path = tmp_path / "calls.jsonl"
    line = json.dumps({"schema": 1, "type": "call", "id": "x", "input": "q" * 200, "output": 1})
    path.write_text("\n".join(line.replace('"x"', f'"c{i}"') for i in range(20000)) + "\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "logos_shift", "export", "--from", str(path), "--format", "raw"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    assert proc.stderr is not None
    first = proc.stdout.readline()
    proc.stdout.close()  # the reader goes away, like `head -1`
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait(timeout=60) == 1
    assert json.loads(first)["id"] == "c0"
    assert "Traceback" not in err
    assert "BrokenPipe" not in err
