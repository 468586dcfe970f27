"""The full-loop demo (examples/full_loop.py) runs offline and ends promoted, then rolled back."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_full_loop_demo(tmp_path: Path) -> None:
    """The demo fine-tunes, advances stage by stage to promoted, then rolls a worse model back.

    It sends traffic and feedback only: every step is the server's own decision,
    printed from the rollout's event log as it happens.
    """
    assert "/evaluate" not in (ROOT / "examples" / "full_loop.py").read_text()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OPENAI_", "ANTHROPIC_", "LOGOS_SHIFT_"))}  # fmt: skip
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "full_loop.py")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert "first model: promoted; second model: rolled_back" in out
    for pct in ("5%", "10%", "25%", "50%"):
        assert f"advancing to {pct}" in out
    assert "non-inferior: success" in out
    assert "[server," in out
    assert "promote (canary => promoted, 100% on the variant)" in out
    assert "rollback (canary => rolled_back, 0% on the variant)" in out
    assert "feedback success worse than control by more than 0.1" in out
    assert "job succeeded" in out
    assert "clients now get 100% on ft:gpt-4o-mini:fake:support:" in out
    assert "clients now get 0% on the variant" in out
    # The second fine-tune follows only its own job: the first rollout's events
    # appear once (in the final status listing), not again while waiting.
    assert out.count("promote: canary -> promoted") == 1
