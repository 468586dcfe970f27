"""What traffic cost and what a route's variant saves versus control (pure functions).

A variant's saving is what its calls' tokens would have cost on the control
model minus what they cost on the model that served them, both at the price
table's prices.  Calls whose model has no price are counted, not priced.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["cost_of", "variant_savings"]

PriceOf = Callable[[str | None], tuple[float, float] | None]


def cost_of(
    price: tuple[float, float] | None, input_tokens: int, output_tokens: int
) -> float | None:
    """Return the USD cost of tokens at a price, or None when there is no price.

    Args:
        price: ``(input, output)`` USD per million tokens, or None.
        input_tokens: prompt tokens.
        output_tokens: completion tokens.

    Returns:
        The cost in USD, or None.

    Example:
        >>> cost_of((1.0, 2.0), 1_000_000, 500_000)
        2.0
    """
    if price is None:
        return None
    return (input_tokens * price[0] + output_tokens * price[1]) / 1e6


def variant_savings(
    rows: Iterable[dict[str, Any]], control_arm: str, control_model: str | None, price_of: PriceOf
) -> dict[str, Any]:
    """Sum what a route's non-control arms cost and would have cost on the control model.

    Args:
        rows: usage rows of one route (``model, variant, calls, input_tokens,
            output_tokens``), e.g. from ``store.queries.usage_totals``.
        control_arm: the control arm's name (its rows are not a saving).
        control_model: the model control serves (None: no saving can be priced).
        price_of: the price lookup.

    Returns:
        ``{"calls", "cost_usd", "on_control_usd", "saved_usd", "unpriced_calls"}``;
        ``saved_usd`` is None when the control model has no price.
    """
    control_price = price_of(control_model)
    calls = unpriced = 0
    cost = on_control = 0.0
    for r in rows:
        if (r["variant"] or control_arm) == control_arm:
            continue
        calls += r["calls"]
        actual = cost_of(price_of(r["model"]), r["input_tokens"], r["output_tokens"])
        would = cost_of(control_price, r["input_tokens"], r["output_tokens"])
        if actual is None or would is None:
            unpriced += r["calls"]
            continue
        cost += actual
        on_control += would
    return {
        "calls": calls,
        "cost_usd": cost,
        "on_control_usd": on_control,
        "saved_usd": on_control - cost if control_price is not None else None,
        "unpriced_calls": unpriced,
    }
