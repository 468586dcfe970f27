"""A mergeable latency sketch: counts in fixed log-scale buckets, plus the extremes.

The rollout's latency guardrail needs, per arm, the number of latencies, their
p95 and how many exceed a limit.  Keeping every latency makes each evaluation
cost the stage's size; these counts are kept at ingest instead (one small upsert
per bucket hit), merged by adding, and read in time independent of the calls.

Bucket ``i`` holds latencies in ``[GAMMA**i, GAMMA**(i+1))`` ms, so a bucket's
representative (its geometric middle) is within 1 % of every value in it; zero
and negative latencies share :data:`ZERO_BUCKET`.  Estimates are clamped to the
observed minimum and maximum, so a sample of one repeated value is exact.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from .intervals import percentile

__all__ = ["GAMMA", "ZERO_BUCKET", "LatencySketch", "bucket_of"]

#: The ratio between consecutive bucket bounds (2 %: representatives within 1 %).
GAMMA = 1.02
_LOG_GAMMA = math.log(GAMMA)
#: The bucket of latencies <= 0 ms.
ZERO_BUCKET = -(10**6)


def bucket_of(ms: float) -> int:
    """Return the bucket index of a latency.

    Args:
        ms: the latency in milliseconds.

    Returns:
        ``floor(log(ms) / log(GAMMA))``, or :data:`ZERO_BUCKET` for ``ms <= 0``.

    Example:
        >>> bucket_of(100.0), bucket_of(0.0) == ZERO_BUCKET
        (232, True)
    """
    if not ms > 0:
        return ZERO_BUCKET
    return math.floor(math.log(ms) / _LOG_GAMMA)


def _bounds(bucket: int) -> tuple[float, float]:
    if bucket == ZERO_BUCKET:
        return (0.0, 0.0)
    return (GAMMA**bucket, GAMMA ** (bucket + 1))


@dataclass(frozen=True)
class LatencySketch:
    """Latency counts per bucket of one arm.

    Attributes:
        buckets: ``(bucket, count)`` pairs, sorted by bucket, counts > 0.
        low: the smallest latency seen (0.0 when empty).
        high: the largest latency seen (0.0 when empty).
    """

    buckets: tuple[tuple[int, int], ...] = ()
    low: float = 0.0
    high: float = 0.0

    @classmethod
    def of(cls, latencies_ms: Iterable[float]) -> LatencySketch:
        """Build the sketch of a sample (tests, simulations).

        Args:
            latencies_ms: the latencies.

        Returns:
            The sketch.
        """
        values = list(latencies_ms)
        counts: dict[int, int] = {}
        for v in values:
            b = bucket_of(v)
            counts[b] = counts.get(b, 0) + 1
        if not values:
            return cls()
        return cls(tuple(sorted(counts.items())), min(values), max(values))

    @property
    def n(self) -> int:
        """How many latencies the sketch holds."""
        return sum(c for _, c in self.buckets)

    def _representative(self, bucket: int) -> float:
        lo, hi = _bounds(bucket)
        return min(max(math.sqrt(lo * hi), self.low), self.high)

    def quantile(self, q: float) -> float | None:
        """Estimate a percentile (within 1 %; exact for a single repeated value).

        Args:
            q: the percentile, 0-100.

        Returns:
            The estimate, or None when empty.
        """
        return percentile(
            [self._representative(b) for b, _ in self.buckets], q, [c for _, c in self.buckets]
        )

    def count_above(self, limit: float) -> int:
        """Estimate how many latencies exceed ``limit``.

        Buckets entirely above count whole; the bucket holding ``limit`` counts
        the share of its (log-scale) width above it.

        Args:
            limit: the threshold in milliseconds.

        Returns:
            The estimated count.
        """
        if self.n == 0 or limit >= self.high:
            return 0
        if limit < self.low:
            return self.n
        above = 0.0
        for bucket, count in self.buckets:
            lo, hi = _bounds(bucket)
            lo, hi = max(lo, self.low), min(hi, self.high)
            if lo > limit:
                above += count
            elif hi > limit and hi > lo:
                above += count * (math.log(hi) - math.log(limit)) / (math.log(hi) - math.log(lo))
        return round(above)
