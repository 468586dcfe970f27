"""The model price table: longest-prefix lookup."""

from __future__ import annotations

from logos_shift.server.store.prices import DEFAULT_PRICES, lookup


def test_price_lookup_uses_the_longest_prefix() -> None:
    """Dated and fine-tuned model names price as their base entry; unknown models have no price."""
    assert lookup(DEFAULT_PRICES, "gpt-4o-mini-2024-07-18") == DEFAULT_PRICES["gpt-4o-mini"]
    assert lookup(DEFAULT_PRICES, "ft:gpt-4o-mini:acme::x1") == DEFAULT_PRICES["ft:gpt-4o-mini"]
    assert lookup(DEFAULT_PRICES, "gpt-4o") == DEFAULT_PRICES["gpt-4o"]
    assert lookup(DEFAULT_PRICES, "my-model") is None
    assert lookup(DEFAULT_PRICES, None) is None
