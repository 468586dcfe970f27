"""The one Wilson interval and the one percentile of the server (pure functions).

Success rates are shown with a Wilson score interval, which stays inside [0, 1]
and behaves at small n where the normal approximation does not.  Percentiles
interpolate linearly between order statistics (numpy's default).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["Z95", "percentile", "wilson"]

Z95 = 1.959963984540054


def wilson(successes: float, n: int, z: float = Z95) -> tuple[float, float] | None:
    """Wilson score interval for a binomial proportion.

    Args:
        successes: number of successes.
        n: number of trials.
        z: the normal quantile (1.96 for 95 %).

    Returns:
        ``(low, high)``, or None when ``n`` is 0.

    Example:
        >>> [round(x, 3) for x in wilson(8, 10)]
        [0.49, 0.943]
    """
    if n <= 0:
        return None
    p = successes / n
    z2 = z * z
    denom = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def percentile(
    values: Sequence[float], q: float, weights: Sequence[int] | None = None
) -> float | None:
    """Linear-interpolated percentile of ``values``, optionally weighted by counts.

    With ``weights`` each value stands for that many equal observations (a
    histogram's bucket representatives and their counts): the result is the one
    the expanded sample would give, computed without expanding it.

    Args:
        values: the sample (any order).
        q: the percentile, 0-100.
        weights: how many observations each value stands for (default: one each).

    Returns:
        The value, or None for an empty sample.

    Example:
        >>> percentile([1, 2, 3, 4], 50)
        2.5
        >>> percentile([1, 2], 50, weights=[3, 1])
        1.0
    """
    if weights is None:
        weights = [1] * len(values)
    pairs = sorted((v, w) for v, w in zip(values, weights, strict=True) if w > 0)
    total = sum(w for _, w in pairs)
    if not total:
        return None
    pos = (total - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, total - 1)
    return _at(pairs, lo) + (_at(pairs, hi) - _at(pairs, lo)) * (pos - lo)


def _at(pairs: Sequence[tuple[float, int]], rank: int) -> float:
    """The value of the ``rank``-th observation (0-based) of sorted ``(value, count)`` pairs."""
    seen = 0
    for value, count in pairs:
        seen += count
        if rank < seen:
            return value
    return pairs[-1][0]
