"""Run every ``benchmarks/bench_*.py`` in turn, each in its own process.

Run: ``.venv/bin/python benchmarks/run_all.py [--quick] [--only NAME ...]``
(``make bench`` runs it after installing the ``bench`` extra).

Each benchmark runs as a subprocess of the same interpreter, so one cannot
skew the next (threads, imports, patched SDKs, GC state); its markdown output
is streamed as it comes (``--markdown`` is passed to those that offer it).
``--quick`` asks each for a short run: passed through as ``--quick`` to
benchmarks that accept it, translated to smaller sizes for those that take
explicit sizes (see ``QUICK_ARGS``).  A failing benchmark is
reported and the others still run; the exit status is 1 if any failed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: Short-run arguments of the benchmarks that have no ``--quick`` flag.
QUICK_ARGS: dict[str, list[str]] = {
    "bench_evidence.py": ["--calls", "1000", "10000", "--reads", "5"],
    "bench_providers.py": ["--n", "100"],
    "bench_rollout_sim.py": ["--runs", "50"],
    "bench_router.py": ["--samples", "500"],
    "bench_server.py": ["--records", "2000", "--config-requests", "200", "--workers", "1"],
}


def benchmarks(only: list[str] | None = None) -> list[Path]:
    """The benchmark scripts, sorted by name; ``only`` filters by name (with or without .py)."""
    found = sorted(HERE.glob("bench_*.py"))
    if not only:
        return found
    wanted = {n if n.endswith(".py") else f"{n}.py" for n in only}
    wanted |= {f"bench_{n}" for n in wanted if not n.startswith("bench_")}
    return [p for p in found if p.name in wanted]


def accepts(script: Path, flag: str) -> bool:
    """Whether ``script`` declares the option ``flag`` (looked up in its source)."""
    return f'"{flag}"' in script.read_text(encoding="utf-8")


def command(script: Path, quick: bool) -> list[str]:
    """The command line that runs ``script``: markdown output, short if ``quick``."""
    cmd = [sys.executable, str(script)]
    if accepts(script, "--markdown"):
        cmd.append("--markdown")
    if quick:
        if accepts(script, "--quick"):
            cmd.append("--quick")
        else:
            cmd += QUICK_ARGS.get(script.name, [])
    return cmd


def main() -> int:
    """Run the benchmarks; return the exit status."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="short runs (less precise)")
    ap.add_argument("--only", nargs="+", metavar="NAME", help="e.g. core router")
    args = ap.parse_args()
    scripts = benchmarks(args.only)
    if not scripts:
        print("no benchmark matched", file=sys.stderr)
        return 2
    failed: list[str] = []
    for script in scripts:
        cmd = command(script, args.quick)
        print(f"## {script.stem}\n", flush=True)
        shown = ["python", str(script.relative_to(HERE.parent)), *cmd[2:]]
        print(f"`{' '.join(shown)}`\n", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.call(cmd, cwd=HERE.parent)
        took = time.perf_counter() - t0
        if rc != 0:
            failed.append(script.name)
            print(f"\n**{script.name} failed (exit status {rc})**\n", flush=True)
        else:
            print(f"\n({script.name}: {took:.0f} s)\n", flush=True)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
