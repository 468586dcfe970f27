"""Rollout simulation: decision rates and feedback samples to a decision per scenario.

Runs the real rollout engine (``logos_shift.server.rollout.engine``) on simulated
hourly batches of 1,000 feedback events split by the stage's share, with the
default policy (margin 5 points, alpha 0.05, N* 1000, 100 feedback per arm per
stage, one hour per stage at least).

    python benchmarks/bench_rollout_sim.py [--runs 400] [--margin 0.05] [--markdown]

Undecided runs (at the margin: neither harm nor non-inferiority is ever shown;
``max_steps`` caps them) are left out of the sample-size columns.
"""

from __future__ import annotations

import argparse
import time

from logos_shift.server.rollout.simulate import simulate
from logos_shift.server.rollout.types import Policy

SCENARIOS = [
    ("10 points worse", 0.85, 0.75, {}),
    ("equal", 0.85, 0.85, {}),
    ("better (+5)", 0.85, 0.90, {}),
    ("at the margin (-5)", 0.85, 0.80, {"max_steps": 60}),
    ("beyond the margin (-7)", 0.85, 0.78, {}),
    ("errors 10% vs 1%", 0.85, 0.85, {"variant_error_rate": 0.10}),
]


def main() -> None:
    """Print one table row per scenario (``--markdown``: a table ready for the README)."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=400)
    ap.add_argument("--margin", type=float, default=0.05)
    ap.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = ap.parse_args()
    policy = Policy(margin=args.margin)
    print(
        f"policy: margin={policy.margin} alpha={policy.alpha} N*={policy.seq_tuning_n} "
        f"min_per_arm={policy.min_per_arm} stages={list(policy.stages)}; runs={args.runs}"
    )
    if args.markdown:
        print(
            "\n| scenario (control 85 %) | runs | promoted | rolled back | undecided "
            "| variant feedback to decision, median / p90 | both arms, median / p90 |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|")
    else:
        print(
            f"{'scenario':<24}{'runs':>6}{'promote':>9}{'rollback':>9}{'undec.':>8}"
            f"{'var med':>9}{'var p90':>9}{'all med':>9}{'all p90':>9}{'s':>6}"
        )
    for name, pc, pv, kw in SCENARIOS:
        t = time.perf_counter()
        s = simulate(pc, pv, policy, runs=args.runs, seed=11, **kw).summary()
        if args.markdown:
            print(
                f"| {name} | {s['runs']} | {s['promote']:.1%} | {s['rollback']:.1%} "
                f"| {s['undecided']:.1%} | {s['variant_median']:,.0f} / {s['variant_p90']:,.0f} "
                f"| {s['total_median']:,.0f} / {s['total_p90']:,.0f} |"
            )
            continue
        print(
            f"{name:<24}{s['runs']:>6}{s['promote']:>9.1%}{s['rollback']:>9.1%}"
            f"{s['undecided']:>8.1%}{s['variant_median']:>9.0f}{s['variant_p90']:>9.0f}"
            f"{s['total_median']:>9.0f}{s['total_p90']:>9.0f}{time.perf_counter() - t:>6.1f}"
        )


if __name__ == "__main__":
    main()
