"""examples/self_host.py runs offline and shows what the server stored."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_self_host_example(tmp_path: Path) -> None:
    """The example starts a server, sends 20 calls with feedback, and prints matching numbers."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OPENAI_", "ANTHROPIC_", "LOGOS_SHIFT_"))}  # fmt: skip
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "self_host.py")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "route 'support': HTTP 201, config version 1" in out
    assert "dataset support: 20 calls, 20 with feedback" in out
    variant_calls = [int(n) for n in re.findall(r"^variant \S+: calls=(\d+)", out, re.M)]
    assert len(variant_calls) == 2
    assert sum(variant_calls) == 20
    assert "fine-tuning examples (outcome=success): 15" in out
