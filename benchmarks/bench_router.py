"""Router decision cost per call with 50 routes configured.

Run: ``.venv/bin/python benchmarks/bench_router.py``

Each sample times a batch of ``BATCH`` consecutive ``decide()`` calls with
``perf_counter_ns`` and divides by the batch size, so the clock's own cost
(~50 ns) does not swamp a sub-microsecond operation; p50/p99 are over the
samples.  Prints a markdown table.  Target: <= 2 µs p50.
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

from logos_shift.routing import validate_config
from logos_shift.routing.router import Router

BATCH = 100


def config(n_routes: int = 50) -> Any:
    routes = {}
    for i in range(n_routes):
        routes[f"route-{i}"] = {
            "match": {"dataset": f"ds-{i}", "model": "gpt-4o"},
            "control": {"name": "base", "model": "gpt-4o"},
            "variants": [
                {"name": "ft-1", "model": f"ft:gpt-4o-mini:acme::{i}",
                 "param_overrides": {"temperature": 0.2}},
            ],
            "rollout": {"variant_pct": 0.10, "holdout_pct": 0.05},
            "breaker": {"consecutive_errors": 5, "cooldown_s": 300},
        }  # fmt: skip
    return validate_config({"version": 1, "routes": routes})


def measure(fn: Callable[[int], object], samples: int) -> tuple[float, float]:
    """Return (p50, p99) in microseconds per call."""
    per_call: list[float] = []
    gc.disable()
    try:
        for s in range(samples):
            t0 = time.perf_counter_ns()
            for i in range(BATCH):
                fn(s * BATCH + i)
            per_call.append((time.perf_counter_ns() - t0) / BATCH / 1000.0)
    finally:
        gc.enable()
    q = statistics.quantiles(per_call, n=100)
    return statistics.median(per_call), q[98]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, default=5000)
    args = parser.parse_args()

    router = Router(rng=random.Random(1))
    router.set_config(config(50))
    empty = Router()
    sticky = {"user_id": "u-42"}
    many = [{"user_id": f"user-{i}"} for i in range(args.samples * BATCH)]
    no_unit: dict[str, Any] = {}

    cases: list[tuple[str, Callable[[int], object]]] = [
        ("sticky user_id (bucket cached)", lambda i: router.decide("ds-25", "gpt-4o", sticky)),
        ("new user_id every call (sha256)", lambda i: router.decide("ds-25", "gpt-4o", many[i])),
        ("no unit (random per call)", lambda i: router.decide("ds-25", "gpt-4o", no_unit)),
        ("model-only lookup, no route matches", lambda i: router.decide("x", "claude", sticky)),
        ("no config at all", lambda i: empty.decide("ds-25", "gpt-4o", sticky)),
    ]
    for _, fn in cases:  # warm up
        for i in range(2000):
            fn(i)
    print(f"Router.decide() with 50 routes, {args.samples} samples x {BATCH} calls\n")
    print("| case | p50 µs | p99 µs |")
    print("|---|---:|---:|")
    for name, fn in cases:
        p50, p99 = measure(fn, args.samples)
        print(f"| {name} | {p50:.2f} | {p99:.2f} |")
    print("\nTarget: <= 2 µs p50.")


if __name__ == "__main__":
    main()
