"""Bucketing: the sha256 formula, uniformity, stickiness, ramps and independence."""

from __future__ import annotations

import hashlib

import pytest

from logos_shift.routing.bucketing import CONTROL, HOLDOUT, assign, bucket, bucket_pair, thresholds

N = 100_000
IDS = [f"user-{i}" for i in range(N)]

# chi-square critical value for 99 degrees of freedom at p = 0.001
CHI2_99_P001 = 148.23


def test_bucket_matches_the_documented_formula() -> None:
    """bucket() is the first 8 bytes of sha256("seed:version:unit") over 2**64."""
    digest = hashlib.sha256(b"support:1:u42").digest()
    assert bucket("support", 1, "u42") == int.from_bytes(digest[:8], "big") / 2**64
    assert bucket_pair("support:1:", "u42")[0] == bucket("support", 1, "u42")


def test_bucket_pair_second_value_uses_next_eight_bytes() -> None:
    """The variant-choice value comes from bytes 8..16 of the same digest."""
    digest = hashlib.sha256(b"s:3:7").digest()
    assert bucket_pair("s:3:", 7)[1] == int.from_bytes(digest[8:16], "big") / 2**64


def test_uniformity_chi_square_over_100k_ids() -> None:
    """Buckets of 100k ids spread evenly over 100 bins (chi-square below the p=0.001 bound)."""
    counts = [0] * 100
    for uid in IDS:
        counts[int(bucket("route-a", 1, uid) * 100)] += 1
    expected = N / 100
    chi2 = sum((c - expected) ** 2 / expected for c in counts)
    assert chi2 < CHI2_99_P001, chi2


def test_uniformity_of_variant_choice_value() -> None:
    """The second value (variant choice) is uniform too, over 100k ids."""
    counts = [0] * 100
    for uid in IDS:
        counts[int(bucket_pair("route-a:1:", uid)[1] * 100)] += 1
    expected = N / 100
    chi2 = sum((c - expected) ** 2 / expected for c in counts)
    assert chi2 < CHI2_99_P001, chi2


def test_stickiness_same_unit_same_bucket() -> None:
    """The same unit always gets the same bucket and the same arm."""
    first = [bucket("r", 1, uid) for uid in IDS[:1000]]
    again = [bucket("r", 1, uid) for uid in IDS[:1000]]
    assert first == again
    arms = {assign(u, 0.5, 0.3, 0.1) for u in [bucket("r", 1, "u42")] * 50}
    assert len(arms) == 1


def test_share_in_variant_matches_variant_pct() -> None:
    """At variant_pct 0.10 about 10 % of 100k ids land in the variant."""
    share = sum(assign(bucket("r", 1, uid), 0.0, 0.10, 0.0) == 0 for uid in IDS) / N
    assert 0.095 < share < 0.105


def test_monotone_ramp_keeps_exposed_units() -> None:
    """Raising variant_pct only adds units: everyone exposed at a stage stays exposed later."""
    buckets = [bucket("ramp", 1, uid) for uid in IDS]
    previous: set[int] = set()
    for pct in (0.01, 0.05, 0.10, 0.25, 0.50, 1.0):
        exposed = {i for i, u in enumerate(buckets) if assign(u, 0.0, pct, 0.0) == 0}
        assert previous <= exposed
        assert abs(len(exposed) / N - pct) < 0.01
        previous = exposed


def test_holdout_is_stable_while_variant_ramps() -> None:
    """The holdout range is anchored at the top, so ramping the variant never touches it."""
    buckets = [bucket("h", 1, uid) for uid in IDS[:20_000]]
    holdouts = [
        {i for i, u in enumerate(buckets) if assign(u, 0.0, pct, 0.05) == HOLDOUT}
        for pct in (0.05, 0.25, 0.95)
    ]
    assert holdouts[0] == holdouts[1] == holdouts[2]
    assert abs(len(holdouts[0]) / 20_000 - 0.05) < 0.01


def test_multi_variant_choice_is_stable_through_the_ramp() -> None:
    """With two variants, a unit keeps the same variant when variant_pct rises."""
    bounds = thresholds([1.0, 3.0])
    pairs = [bucket_pair("mv:1:", uid) for uid in IDS[:20_000]]
    at_10 = {i: assign(u, u2, 0.10, 0.0, bounds) for i, (u, u2) in enumerate(pairs)}
    at_50 = {i: assign(u, u2, 0.50, 0.0, bounds) for i, (u, u2) in enumerate(pairs)}
    for i, arm in at_10.items():
        if arm != CONTROL:
            assert at_50[i] == arm
    in_variants = [a for a in at_50.values() if a != CONTROL]
    share_second = in_variants.count(1) / len(in_variants)
    assert 0.72 < share_second < 0.78


def test_independence_between_routes() -> None:
    """Two routes' buckets are independent: P(both < 0.1) is about 0.01, correlation about 0."""
    a = [bucket("route-a", 1, uid) for uid in IDS]
    b = [bucket("route-b", 1, uid) for uid in IDS]
    both = sum(1 for x, y in zip(a, b, strict=True) if x < 0.1 and y < 0.1) / N
    assert 0.008 < both < 0.012
    mean_a, mean_b = sum(a) / N, sum(b) / N
    cov = sum((x - mean_a) * (y - mean_b) for x, y in zip(a, b, strict=True)) / N
    var_a = sum((x - mean_a) ** 2 for x in a) / N
    var_b = sum((y - mean_b) ** 2 for y in b) / N
    assert abs(cov / (var_a * var_b) ** 0.5) < 0.02


def test_bucket_version_rerandomises() -> None:
    """Bumping bucket_version reshuffles: only ~10 % of the old variant stays in it."""
    old = {uid for uid in IDS if bucket("r", 1, uid) < 0.10}
    new = {uid for uid in IDS if bucket("r", 2, uid) < 0.10}
    overlap = len(old & new) / len(old)
    assert 0.07 < overlap < 0.13


def test_assign_ranges_at_the_edges() -> None:
    """Range edges: u == variant_pct is control, u == 1 - holdout_pct is holdout."""
    assert assign(0.0, 0.0, 0.0, 0.0) == CONTROL
    assert assign(0.1, 0.0, 0.1, 0.2) == CONTROL
    assert assign(0.8, 0.0, 0.1, 0.2) == HOLDOUT
    assert assign(0.0999, 0.0, 0.1, 0.2) == 0
    assert assign(0.999, 0.0, 1.0, 0.0) == 0


def test_thresholds_normalise_weights() -> None:
    """Weights become cumulative bounds ending exactly at 1.0; bad weights are refused."""
    assert thresholds([1.0, 1.0, 2.0]) == (0.25, 0.5, 1.0)
    with pytest.raises(ValueError):
        thresholds([])
    with pytest.raises(ValueError):
        thresholds([1.0, 0.0])
