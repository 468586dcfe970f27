"""Always-valid (sequential) one-sided bounds for rollout decisions.

A rollout looks at its evidence after every batch of feedback, so a fixed-horizon
test would inflate false alarms with every peek.  These bounds are the asymptotic
confidence sequences of Waudby-Smith et al. (arXiv 2103.06476) in the form
GrowthBook's engine uses (``gbstats``): for a mean-zero statistic over ``N`` units
with per-unit variance ``s2``, the one-sided half-width is::

    sqrt(s2) * sqrt(2 (N rho^2 + 1) / (N^2 rho^2) * ln(1 + sqrt(N rho^2 + 1) / (2 alpha)))

with ``rho = sqrt((-2 ln alpha + ln(-2 ln alpha + 1)) / N*)``; ``N*`` (the tuning
sample size) is where the sequence is tightest.  The bound holds simultaneously
for every ``N``, so it may be checked as often as one likes.

Everything here is pure arithmetic on counts; no I/O, no numpy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = [
    "Bound",
    "cs_halfwidth",
    "diff_of_means",
    "diff_of_proportions",
    "proportion_above",
    "rho",
    "srm_p_value",
]


@dataclass(frozen=True)
class Bound:
    """A point estimate with one-sided always-valid bounds.

    Attributes:
        estimate: the observed value (e.g. ``p_variant - p_control``).
        lower: the lower bound (valid at level ``1 - alpha`` for every look).
        upper: the upper bound (valid at level ``1 - alpha`` for every look).
        halfwidth: ``estimate - lower`` (``inf`` when there is no data).
        n: the number of units the bound is computed over.
    """

    estimate: float
    lower: float
    upper: float
    halfwidth: float
    n: int

    def to_json(self) -> dict[str, float | int | None]:
        """Return a JSON-safe dict (infinities become ``None``)."""

        def fin(x: float) -> float | None:
            return round(x, 6) if math.isfinite(x) else None

        return {
            "estimate": fin(self.estimate),
            "lower": fin(self.lower),
            "upper": fin(self.upper),
            "halfwidth": fin(self.halfwidth),
            "n": self.n,
        }


_NO_DATA = Bound(0.0, -math.inf, math.inf, math.inf, 0)


def rho(alpha: float, tuning_n: float) -> float:
    """Return the mixture parameter of the confidence sequence.

    Args:
        alpha: the error rate, in (0, 1).
        tuning_n: ``N*``, the sample size at which the sequence is tightest.

    Returns:
        ``sqrt((-2 ln alpha + ln(-2 ln alpha + 1)) / N*)``.

    Raises:
        ValueError: ``alpha`` outside (0, 1) or ``tuning_n`` not positive.
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if tuning_n <= 0:
        raise ValueError(f"tuning_n must be positive, got {tuning_n}")
    a = -2.0 * math.log(alpha)
    return math.sqrt((a + math.log(a + 1.0)) / tuning_n)


def cs_halfwidth(variance: float, n: int, alpha: float, tuning_n: float) -> float:
    """Return the one-sided always-valid half-width for an estimate.

    Args:
        variance: the variance of the estimate itself (e.g. ``v_a/n_a + v_b/n_b``).
        n: the number of units behind it (both arms together).
        alpha: the one-sided error rate.
        tuning_n: ``N*`` (see :func:`rho`).

    Returns:
        The half-width; ``inf`` when ``n`` is 0.
    """
    if n <= 0:
        return math.inf
    r2 = rho(alpha, tuning_n) ** 2
    s2 = max(variance, 0.0) * n
    term = 2.0 * (n * r2 + 1.0) / (n * n * r2)
    return math.sqrt(s2) * math.sqrt(term * math.log(1.0 + math.sqrt(n * r2 + 1.0) / (2.0 * alpha)))


def _smoothed_var(successes: float, n: int) -> float:
    # Agresti-Caffo style +1/+2 smoothing: with 0 or n successes the raw variance is 0,
    # which would make the bound collapse onto the estimate after a handful of samples.
    p = (successes + 1.0) / (n + 2.0)
    return p * (1.0 - p)


def diff_of_proportions(
    succ_a: float, n_a: int, succ_b: float, n_b: int, alpha: float, tuning_n: float
) -> Bound:
    """Bound ``p_a - p_b`` for two independent Bernoulli arms.

    Args:
        succ_a: successes in arm a (the variant).
        n_a: trials in arm a.
        succ_b: successes in arm b (the control).
        n_b: trials in arm b.
        alpha: one-sided error rate of each bound.
        tuning_n: ``N*`` (see :func:`rho`).

    Returns:
        The estimate with lower and upper always-valid bounds; unbounded when an
        arm has no trials.
    """
    if n_a <= 0 or n_b <= 0:
        return _NO_DATA
    est = succ_a / n_a - succ_b / n_b
    var = _smoothed_var(succ_a, n_a) / n_a + _smoothed_var(succ_b, n_b) / n_b
    hw = cs_halfwidth(var, n_a + n_b, alpha, tuning_n)
    return Bound(est, est - hw, est + hw, hw, n_a + n_b)


def diff_of_means(
    sum_a: float,
    sumsq_a: float,
    n_a: int,
    sum_b: float,
    sumsq_b: float,
    n_b: int,
    alpha: float,
    tuning_n: float,
    scale_b: float = 1.0,
) -> Bound:
    """Bound ``mean_a - scale_b * mean_b`` from sums and sums of squares.

    ``scale_b`` turns a ratio limit into a linear contrast: "cost per call of the
    variant at most 1.2x control" is ``mean_a - 1.2 mean_b <= 0``.

    Args:
        sum_a: sum of the values in arm a.
        sumsq_a: sum of their squares.
        n_a: count in arm a.
        sum_b: sum of the values in arm b.
        sumsq_b: sum of their squares.
        n_b: count in arm b.
        alpha: one-sided error rate of each bound.
        tuning_n: ``N*`` (see :func:`rho`).
        scale_b: multiplier on arm b's mean.

    Returns:
        The bound; unbounded when an arm has fewer than 2 values.
    """
    if n_a < 2 or n_b < 2:
        return _NO_DATA
    m_a, m_b = sum_a / n_a, sum_b / n_b
    v_a = max(sumsq_a / n_a - m_a * m_a, 0.0) * n_a / (n_a - 1)
    v_b = max(sumsq_b / n_b - m_b * m_b, 0.0) * n_b / (n_b - 1)
    est = m_a - scale_b * m_b
    var = v_a / n_a + scale_b * scale_b * v_b / n_b
    hw = cs_halfwidth(var, n_a + n_b, alpha, tuning_n)
    return Bound(est, est - hw, est + hw, hw, n_a + n_b)


def proportion_above(successes: float, n: int, alpha: float, tuning_n: float) -> Bound:
    """Bound a single proportion (used for "share of calls slower than a threshold").

    Args:
        successes: how many of the ``n`` trials had the property.
        n: trials.
        alpha: one-sided error rate of each bound.
        tuning_n: ``N*`` (see :func:`rho`).

    Returns:
        The bound on the proportion.
    """
    if n <= 0:
        return _NO_DATA
    est = successes / n
    hw = cs_halfwidth(_smoothed_var(successes, n) / n, n, alpha, tuning_n)
    return Bound(est, est - hw, est + hw, hw, n)


def srm_p_value(n_variant: int, n_control: int, expected_variant_share: float) -> float:
    """Return the chi-square (1 df) p-value of a sample-ratio mismatch.

    Args:
        n_variant: units (calls) seen in the variant.
        n_control: units seen in the control.
        expected_variant_share: the share the config assigns to the variant among
            the two arms.

    Returns:
        The p-value; 1.0 when there is nothing to test.
    """
    total = n_variant + n_control
    if total <= 0 or not 0.0 < expected_variant_share < 1.0:
        return 1.0
    e_v = total * expected_variant_share
    e_c = total - e_v
    chi2 = (n_variant - e_v) ** 2 / e_v + (n_control - e_c) ** 2 / e_c
    # With 1 degree of freedom the chi-square survival function is erfc(sqrt(x/2)).
    return math.erfc(math.sqrt(chi2 / 2.0))
