"""Tests of the always-valid one-sided bounds (pure arithmetic)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from logos_shift.server.stats import sequential as _seqstats


def test_rho_matches_growthbook_formula() -> None:
    """rho is sqrt((-2 ln a + ln(-2 ln a + 1)) / N*), as in GrowthBook's engine."""
    a = -2 * math.log(0.05)
    assert _seqstats.rho(0.05, 5000) == pytest.approx(math.sqrt((a + math.log(a + 1)) / 5000))


def test_rho_rejects_bad_arguments() -> None:
    """alpha outside (0, 1) or a non-positive tuning size is refused."""
    with pytest.raises(ValueError):
        _seqstats.rho(0.0, 100)
    with pytest.raises(ValueError):
        _seqstats.rho(0.05, 0)


def test_halfwidth_shrinks_with_n_and_is_wider_than_fixed_horizon() -> None:
    """The sequence narrows as data grows yet stays wider than a fixed 95 % interval."""
    widths = [_seqstats.cs_halfwidth(0.25 / n, n, 0.05, 1000) for n in (100, 1000, 10000)]
    assert widths[0] > widths[1] > widths[2]
    assert widths[1] > 1.645 * math.sqrt(0.25 / 1000)


def test_no_data_gives_unbounded_interval() -> None:
    """An empty arm yields infinite bounds so no decision can fire on it."""
    b = _seqstats.diff_of_proportions(0, 0, 5, 10, 0.05, 1000)
    assert b.lower == -math.inf
    assert b.upper == math.inf
    assert b.to_json()["lower"] is None


def test_diff_of_proportions_detects_a_clear_drop() -> None:
    """A 20-point drop over 1000 samples per arm puts the upper bound below zero."""
    b = _seqstats.diff_of_proportions(650, 1000, 850, 1000, 0.05, 1000)
    assert b.estimate == pytest.approx(-0.2)
    assert b.upper < -0.1
    assert b.lower < b.estimate < b.upper


def test_extreme_counts_do_not_collapse_the_bound() -> None:
    """All-success arms still get a positive half-width thanks to smoothing."""
    b = _seqstats.diff_of_proportions(40, 40, 40, 40, 0.05, 1000)
    assert b.halfwidth > 0.05


def test_diff_of_means_with_scale_is_a_ratio_contrast() -> None:
    """scale_b turns 'variant mean <= 1.2 x control mean' into a linear contrast."""
    rng = np.random.default_rng(1)
    a = rng.normal(3.0, 0.5, 2000)
    c = rng.normal(2.0, 0.5, 2000)
    args = (a.sum(), (a**2).sum(), 2000, c.sum(), (c**2).sum(), 2000, 0.05, 1000)
    bound = _seqstats.diff_of_means(*args, scale_b=1.2)
    assert bound.estimate == pytest.approx(a.mean() - 1.2 * c.mean())
    assert bound.lower > 0
    assert _seqstats.diff_of_means(*args, scale_b=2.0).upper < 0


def test_diff_of_means_needs_two_values_per_arm() -> None:
    """Fewer than two values in an arm gives no bound (no variance estimate)."""
    assert _seqstats.diff_of_means(1.0, 1.0, 1, 2.0, 2.0, 2, 0.05, 100).n == 0


def test_proportion_above_bounds_a_single_rate() -> None:
    """A single proportion's bound contains its estimate."""
    b = _seqstats.proportion_above(30, 100, 0.05, 1000)
    assert b.lower < 0.3 < b.upper


def test_srm_p_value() -> None:
    """A 50/50 split is consistent; a 60/40 split over 10k is a mismatch."""
    assert _seqstats.srm_p_value(5000, 5000, 0.5) == pytest.approx(1.0)
    assert _seqstats.srm_p_value(6000, 4000, 0.5) < 1e-10
    assert _seqstats.srm_p_value(0, 0, 0.5) == 1.0


def test_sequence_is_valid_under_continuous_peeking() -> None:
    """With no true difference, peeking after every batch crosses zero in <= alpha of runs."""
    rng = np.random.default_rng(7)
    runs, looks, batch = 400, 40, 50
    va = rng.binomial(1, 0.8, (runs, looks * batch)).reshape(runs, looks, batch).sum(2).cumsum(1)
    vb = rng.binomial(1, 0.8, (runs, looks * batch)).reshape(runs, looks, batch).sum(2).cumsum(1)
    crossed = 0
    for r in range(runs):
        for k in range(looks):
            n = (k + 1) * batch
            if _seqstats.diff_of_proportions(va[r, k], n, vb[r, k], n, 0.05, 1000).upper < 0:
                crossed += 1
                break
    assert crossed / runs <= 0.05
