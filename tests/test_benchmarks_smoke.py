"""The benchmarks still run and print every row (no timing asserts: figures are not tested)."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"_smoke_{name}", BENCH / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _row(out: str, label: str) -> list[str]:
    """The cells of the markdown row whose first cell is ``label``."""
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == label:
            return cells[1:]
    raise AssertionError(f"no row {label!r} in:\n{out}")


def _number(cell: str) -> float:
    return float(cell.replace(",", ""))


def test_bench_core_quick_prints_every_row() -> None:
    """bench_core.py --quick exits 0 and prints each overhead and throughput row with numbers."""
    proc = subprocess.run(
        [sys.executable, str(BENCH / "bench_core.py"), "--quick", "--rounds", "2",
         "--records", "3000"],
        capture_output=True, text=True, timeout=240, cwd=BENCH.parent,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "Decorator overhead" in out
    assert "Records dropped during the overhead run: 0." in out
    assert "Pipeline throughput" in out
    overhead_rows = ("small payload", "small payload, async", "30 KB payload")
    throughput_rows = ("JSONL file", "HTTP (local server, separate process)")
    for label in overhead_rows:
        cells = _row(out, label)
        assert len(cells) == 6, cells
        for cell in cells:
            _number(cell)  # every cell is a figure, not "n/a" or an error
    for label in throughput_rows:
        cells = _row(out, label)
        assert len(cells) == 8, cells
        # Every record reached its sink: sent == records, nothing dropped.
        assert _number(cells[2]) == 3000, cells
        assert _number(cells[3]) == 0, cells
        for cell in cells:
            _number(cell)


def test_bench_core_row_labels_match_the_module(monkeypatch: pytest.MonkeyPatch) -> None:
    """The labels checked above are the ones bench_core.py declares."""
    monkeypatch.syspath_prepend(str(BENCH))  # bench_core imports its sibling _util
    core = _load("bench_core")
    assert core.OVERHEAD_ROWS == ("small payload", "small payload, async", "30 KB payload")
    assert core.THROUGHPUT_ROWS == ("JSONL file", "HTTP (local server, separate process)")


def test_run_all_has_a_quick_form_for_every_benchmark() -> None:
    """run_all.py knows how to shorten each bench_*.py: --quick or explicit sizes."""
    run_all = _load("run_all")
    scripts = run_all.benchmarks()
    names = {p.name for p in scripts}
    assert {"bench_core.py", "bench_providers.py", "bench_router.py"} <= names
    for script in scripts:
        full = run_all.command(script, quick=False)
        cmd = run_all.command(script, quick=True)
        assert cmd[:2] == [sys.executable, str(script)]
        assert len(cmd) > len(full), f"no quick arguments for {script.name}"
        if script.name == "bench_core.py":
            assert cmd[2:] == ["--quick"]
        # The flags passed exist in the script's argument parser.
        source = script.read_text(encoding="utf-8")
        for flag in (a for a in cmd[2:] if a.startswith("--")):
            assert re.search(rf"[\"']{re.escape(flag)}[\"']", source), (script.name, flag)
    core = BENCH / "bench_core.py"
    assert run_all.command(core, quick=False) == [sys.executable, str(core)]
    assert [p.name for p in run_all.benchmarks(["core"])] == ["bench_core.py"]


def test_bench_evidence_tiny_prints_a_row_per_stage_size() -> None:
    """bench_evidence.py on SQLite at tiny sizes exits 0 with a figure in every cell."""
    proc = subprocess.run(
        [sys.executable, str(BENCH / "bench_evidence.py"), "--sqlite", "--calls", "100", "1000",
         "--reads", "2"],
        capture_output=True, text=True, timeout=240, cwd=BENCH.parent,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    for label in ("100", "1,000"):
        cells = _row(proc.stdout, label)
        assert len(cells) == 4, cells
        for cell in cells:
            _number(cell)
