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


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated percentile of ``values``.

    Args:
        values: the sample (any order).
        q: the percentile, 0-100.

    Returns:
        The value, or None for an empty sample.

    Example:
        >>> percentile([1, 2, 3, 4], 50)
        2.5
    """
    if not values:
        return None
    data = sorted(values)
    pos = (len(data) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)
