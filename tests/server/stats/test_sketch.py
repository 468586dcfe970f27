"""The latency sketch: log-scale bucket counts give p95 and over-limit counts close to exact."""

from __future__ import annotations

import random

import pytest

from logos_shift.server.stats.intervals import percentile
from logos_shift.server.stats.sketch import GAMMA, ZERO_BUCKET, LatencySketch, bucket_of


def test_weighted_percentile_equals_the_expanded_sample() -> None:
    """A value with weight k counts as k equal observations."""
    rng = random.Random(1)
    values = [rng.uniform(0, 100) for _ in range(50)]
    weights = [rng.randint(0, 5) for _ in values]
    expanded = [v for v, w in zip(values, weights, strict=True) for _ in range(w)]
    for q in (0, 5, 50, 95, 99, 100):
        assert percentile(values, q, weights) == pytest.approx(percentile(expanded, q))
    assert percentile([1.0], 50, [0]) is None


def test_quantiles_are_within_one_percent() -> None:
    """On a skewed sample the sketch's p50/p95/p99 are within 1 % of the exact percentiles."""
    rng = random.Random(2)
    xs = [rng.lognormvariate(5, 0.8) for _ in range(20_000)]
    sketch = LatencySketch.of(xs)
    assert sketch.n == len(xs)
    for q in (50, 95, 99):
        assert sketch.quantile(q) == pytest.approx(percentile(xs, q), rel=(GAMMA - 1) / 2 + 1e-3)


def test_a_repeated_value_is_exact_and_the_extremes_clamp() -> None:
    """All equal latencies give that value back; estimates never leave [min, max]."""
    sketch = LatencySketch.of([100.0] * 200)
    assert sketch.quantile(95) == 100.0
    assert sketch.count_above(99.9) == 200
    assert sketch.count_above(100.0) == 0
    mixed = LatencySketch.of([0.0, 5.0, 5.001])
    assert bucket_of(0.0) == bucket_of(-1.0) == ZERO_BUCKET
    assert mixed.quantile(0) == 0.0
    assert mixed.quantile(100) == 5.001
    assert LatencySketch().quantile(50) is None
    assert LatencySketch().count_above(1.0) == 0


def test_count_above_a_limit_is_close_to_exact() -> None:
    """The share over a limit (the latency guardrail's input) is within half a percent."""
    rng = random.Random(3)
    xs = [rng.lognormvariate(5, 0.6) for _ in range(10_000)]
    sketch = LatencySketch.of(xs)
    for limit in (80.0, 150.0, 300.0, 600.0):
        exact = sum(1 for x in xs if x > limit)
        assert abs(sketch.count_above(limit) - exact) <= 0.005 * len(xs)
