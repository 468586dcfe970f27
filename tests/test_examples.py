"""Every example in examples/ runs offline and exits cleanly."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_runs_offline(example: Path, tmp_path: Path) -> None:
    """The example exits 0 without network access or API keys."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OPENAI_", "ANTHROPIC_", "LOGOS_SHIFT_"))}  # fmt: skip
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    proc = subprocess.run(
        [sys.executable, str(example)], cwd=tmp_path, env=env, capture_output=True,
        text=True, timeout=240,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip(), "an example should show what it did"


def test_quickstart_output(tmp_path: Path) -> None:
    """The quick start shows two calls, two feedback records and exact stats."""
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart.py"), str(tmp_path / "c.jsonl")],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    assert out.count("  call ") == 2
    assert out.count("  feedback ") == 2
    assert "stats: captured=4 sent=4 spooled=0 dropped=0" in out
