"""The one Wilson interval and the one percentile of the server."""

from __future__ import annotations

import pytest

from logos_shift.server.stats.intervals import percentile, wilson


def test_wilson_interval_known_values() -> None:
    """The Wilson 95 % interval matches published values and stays within [0, 1]."""
    lo, hi = wilson(8, 10)  # type: ignore[misc]
    assert (round(lo, 4), round(hi, 4)) == (0.4902, 0.9433)
    assert wilson(0, 10)[0] == pytest.approx(0.0)  # type: ignore[index]
    assert wilson(10, 10)[1] == pytest.approx(1.0)  # type: ignore[index]
    assert wilson(0, 0) is None


def test_percentile_interpolates_like_numpy() -> None:
    """Percentiles interpolate linearly between order statistics."""
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile([10.0], 95) == 10.0
    assert percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 95) == pytest.approx(9.55)
    assert percentile([], 50) is None


def test_wilson_interval_is_symmetric_at_one_half() -> None:
    """Wilson's interval matches the textbook value and handles n = 0."""
    low, high = wilson(50, 100)
    assert low == pytest.approx(0.4038, abs=1e-3)
    assert high == pytest.approx(0.5962, abs=1e-3)
    assert wilson(0, 0) is None
