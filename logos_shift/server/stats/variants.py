"""Per-variant statistics of a route: pure functions over plain rows.

Success rate is ``success / (success + failure)`` over calls whose latest
feedback is one of those two (``neutral`` is feedback but not a verdict), with
a Wilson score 95 % interval (:mod:`.intervals`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .intervals import percentile, wilson


@dataclass
class _Acc:
    calls: int = 0
    errors: int = 0
    fallbacks: int = 0
    with_feedback: int = 0
    successes: int = 0
    failures: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float = 0.0
    unpriced: int = 0
    latencies: list[float] = field(default_factory=list)


def _rate(k: int, n: int) -> float | None:
    return k / n if n else None


def variant_stats(
    rows: Iterable[dict[str, Any]],
    price_of: Callable[[str | None], tuple[float, float] | None],
) -> dict[str, dict[str, Any]]:
    """Aggregate call rows into per-variant statistics.

    Args:
        rows: dicts with ``variant, is_error, fallback, latency_ms,
            input_tokens, output_tokens, model, outcome, feedback_count``.
        price_of: returns ``(input, output)`` USD per million tokens for a
            model, or None when the model has no price.

    Returns:
        ``{variant: {...}}``; a call without a variant is counted under ``"none"``.
    """
    accs: dict[str, _Acc] = {}
    for row in rows:
        acc = accs.setdefault(row["variant"] or "none", _Acc())
        acc.calls += 1
        acc.errors += bool(row["is_error"])
        acc.fallbacks += bool(row["fallback"])
        if row["feedback_count"]:
            acc.with_feedback += 1
        acc.successes += row["outcome"] == "success"
        acc.failures += row["outcome"] == "failure"
        if row["latency_ms"] is not None:
            acc.latencies.append(float(row["latency_ms"]))
        tin, tout = row["input_tokens"] or 0, row["output_tokens"] or 0
        acc.input_tokens += tin
        acc.output_tokens += tout
        price = price_of(row["model"])
        if price is None:
            acc.unpriced += bool(tin or tout)
        else:
            acc.cost += (tin * price[0] + tout * price[1]) / 1e6
    out: dict[str, dict[str, Any]] = {}
    for name, a in sorted(accs.items()):
        judged = a.successes + a.failures
        interval = wilson(a.successes, judged)
        out[name] = {
            "calls": a.calls,
            "feedback": a.with_feedback,
            "feedback_rate": _rate(a.with_feedback, a.calls),
            "successes": a.successes,
            "failures": a.failures,
            "success_rate": _rate(a.successes, judged),
            "success_ci95": list(interval) if interval else None,
            "error_rate": _rate(a.errors, a.calls),
            "fallback_rate": _rate(a.fallbacks, a.calls),
            "latency_ms_p50": percentile(a.latencies, 50),
            "latency_ms_p95": percentile(a.latencies, 95),
            "input_tokens": a.input_tokens,
            "output_tokens": a.output_tokens,
            "cost_usd": round(a.cost, 8),
            "cost_per_call_usd": round(a.cost / a.calls, 10) if a.calls else None,
            "unpriced_calls": a.unpriced,
        }
    return out
