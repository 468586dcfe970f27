"""The provider examples run offline and show one record per call."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("name", "records"), [("openai_patch.py", 3), ("anthropic_patch.py", 3)])
def test_example_offline(name: str, records: int, tmp_path: Path) -> None:
    """The example exits 0 without keys and prints each captured call's status."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OPENAI_", "ANTHROPIC_", "LOGOS_SHIFT_"))}  # fmt: skip
    env["XDG_CACHE_HOME"] = str(tmp_path)
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / name)], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = [ln for ln in proc.stdout.splitlines() if " model=" in ln]
    assert len(lines) == records
    assert "stream=None" in lines[0]
