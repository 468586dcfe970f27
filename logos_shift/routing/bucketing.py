"""Deterministic A/B assignment: a sha256 bucket and anchored ranges.

A unit (a user id, or whatever metadata key the route names) is hashed with the
route's seed and ``bucket_version``::

    digest = sha256(f"{seed}:{bucket_version}:{unit}".encode()).digest()
    u  = int.from_bytes(digest[:8], "big") / 2**64     # which arm
    u2 = int.from_bytes(digest[8:16], "big") / 2**64   # which variant, if several

Both are uniform on [0, 1) and independent of each other.  The arms are fixed
("anchored") ranges of ``u``::

    [0, variant_pct)              variant
    [variant_pct, 1-holdout_pct)  control
    [1-holdout_pct, 1)            holdout (kept on the control model)

so raising ``variant_pct`` only moves units from control into the variant: a
unit exposed at 5 % is still exposed at 25 % (GrowthBook's coverage ranges and
Statsig's pass % work the same way).  With several variants, ``u2`` picks one
by fixed sub-ranges of [0, 1) proportional to the variants' weights, which do
not depend on ``variant_pct`` either, so a unit keeps its variant through the
ramp.  Changing the list of variants or their weights, or bumping
``bucket_version``, re-randomises.  Each route has its own seed (its name by
default), so buckets of different routes are independent.
"""

from __future__ import annotations

import hashlib
import struct
from bisect import bisect_right
from collections.abc import Sequence

_SCALE = 2.0**-64
_sha256 = hashlib.sha256
# One C call for both 8-byte halves; cheaper than two int.from_bytes slices.
_two_u64 = struct.Struct(">QQ").unpack_from

#: ``assign`` results other than a variant index.
CONTROL = -1
HOLDOUT = -2


def bucket(seed: str, bucket_version: int, unit: object) -> float:
    """Return the unit's bucket in [0, 1) for a route.

    Args:
        seed: the route's assignment seed.
        bucket_version: bumping it re-randomises every unit.
        unit: the assignment unit (formatted with ``str``).

    Returns:
        ``int.from_bytes(sha256(f"{seed}:{bucket_version}:{unit}").digest()[:8]) / 2**64``.

    Example:
        >>> 0.0 <= bucket("support", 1, "u42") < 1.0
        True
    """
    digest = hashlib.sha256(f"{seed}:{bucket_version}:{unit}".encode()).digest()
    return int.from_bytes(digest[:8], "big") * _SCALE


def bucket_pair(prefix: str, unit: object) -> tuple[float, float]:
    """Return ``(u, u2)`` for ``prefix = f"{seed}:{bucket_version}:"`` and a unit.

    ``u`` equals :func:`bucket`; ``u2`` comes from the next 8 bytes of the same
    digest and picks among several variants.

    Args:
        prefix: ``f"{seed}:{bucket_version}:"``, precomputed per route.
        unit: the assignment unit.

    Returns:
        Two independent uniform values in [0, 1).
    """
    a, b = _two_u64(_sha256(f"{prefix}{unit}".encode()).digest())
    return a * _SCALE, b * _SCALE


def thresholds(weights: Sequence[float]) -> tuple[float, ...]:
    """Return the cumulative upper bounds of each variant's sub-range of [0, 1).

    Args:
        weights: positive weights, one per variant, in config order.

    Returns:
        Increasing bounds; the last is exactly 1.0.

    Raises:
        ValueError: no weights, or a weight is not positive.
    """
    if not weights or any(w <= 0 for w in weights):
        raise ValueError("weights must be a non-empty list of positive numbers")
    total = float(sum(weights))
    acc = 0.0
    out: list[float] = []
    for w in weights:
        acc += w
        out.append(acc / total)
    out[-1] = 1.0
    return tuple(out)


def assign(
    u: float,
    u2: float,
    variant_pct: float,
    holdout_pct: float,
    bounds: Sequence[float] = (1.0,),
) -> int:
    """Map a unit's bucket to an arm by anchored ranges.

    Args:
        u: the arm bucket (from :func:`bucket` or random).
        u2: the variant-choice bucket (only used when ``u`` is in the variant range).
        variant_pct: share of units in the variants, in [0, 1].
        holdout_pct: share kept out of the experiment, in [0, 1].
        bounds: :func:`thresholds` of the variants' weights.

    Returns:
        The variant's index, or :data:`CONTROL`, or :data:`HOLDOUT`.

    Example:
        >>> assign(0.05, 0.7, 0.10, 0.0), assign(0.5, 0.7, 0.10, 0.0)
        (0, -1)
    """
    if u < variant_pct:
        if len(bounds) == 1:
            return 0
        return min(bisect_right(bounds, u2), len(bounds) - 1)
    if u >= 1.0 - holdout_pct:
        return HOLDOUT
    return CONTROL
