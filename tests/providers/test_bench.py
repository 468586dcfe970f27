"""Smoke run of ``benchmarks/bench_providers.py --quick``: every row is there.

No timing is checked (performance is the benchmark's business, not the tests').
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_providers.py"
SCENARIOS = [
    f"{transport} {mode} {kind}"
    for transport in ("mock", "socket")
    for mode in ("sync", "async")
    for kind in ("non-stream", "stream 50")
]
OURS = ("bare", "logos_shift", "logos_shift+routing")
PEERS = ("otel-openai", "langfuse")


def test_quick_benchmark_prints_every_row() -> None:
    """One row per scenario and variant; a peer that is not installed is reported as skipped."""
    # A subprocess: the peers patch the SDK at import time, for good.
    done = subprocess.run(
        [sys.executable, str(BENCH), "--quick"],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    header = "| scenario | variant | p50 µs | added p50 µs | p99 µs | added p99 µs |"
    assert any(line.startswith(header) for line in lines)
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines if line[:2] == "| "]
    rows = {(c[0], c[1]): c for c in cells[1:]}
    skipped = [line for line in lines if line.startswith("skipped: ")]
    for peer in PEERS:
        present = any(v == peer for _, v in rows)
        assert present != any(s.startswith(f"skipped: {peer}") for s in skipped), peer
    variants = OURS + tuple(p for p in PEERS if any(v == p for _, v in rows))
    for scenario in SCENARIOS:
        for variant in variants:
            row = rows[(scenario, variant)]
            assert len(row) == 8
            if variant != "bare":
                float(row[2]), float(row[5]), float(row[7])  # every figure is a number
    assert len(rows) == len(SCENARIOS) * len(variants)
