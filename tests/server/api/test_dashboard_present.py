"""Pure helpers behind the dashboard: savings arithmetic, a call's row and conversation."""

from __future__ import annotations

from logos_shift.server.api.ui import _present
from logos_shift.server.stats.savings import cost_of, variant_savings

PRICES = {"big": (10.0, 20.0), "small": (1.0, 2.0)}


def _price(model: str | None) -> tuple[float, float] | None:
    return PRICES.get(model or "")


def test_variant_savings_prices_variant_tokens_at_control() -> None:
    """The saving is the variant's tokens at control's price minus at its own; control rows
    and unpriced models are left out (the latter counted)."""
    rows = [
        {"model": "big", "variant": "control", "calls": 5, "input_tokens": 10**6,
         "output_tokens": 0},
        {"model": "small", "variant": "ft", "calls": 2, "input_tokens": 10**6,
         "output_tokens": 10**6},
        {"model": "mystery", "variant": "ft", "calls": 1, "input_tokens": 5, "output_tokens": 5},
    ]  # fmt: skip
    s = variant_savings(rows, "control", "big", _price)
    assert s == {"calls": 3, "cost_usd": 3.0, "on_control_usd": 30.0, "saved_usd": 27.0,
                 "unpriced_calls": 1}  # fmt: skip
    assert variant_savings(rows, "control", None, _price)["saved_usd"] is None
    assert cost_of(None, 1, 1) is None


def test_summary_and_conversation_of_a_chat_call() -> None:
    """A chat record becomes its list row (cost from the price table) and its turns in order."""
    record = {
        "id": "c1",
        "ts": "2026-01-02T03:04:05.123Z",
        "dataset": "d",
        "served_model": "small",
        "latency_ms": 12.4,
        "usage": {"input_tokens": 1000, "output_tokens": 500},
        "input": {"messages": [{"role": "system", "content": "be brief"},
                               {"role": "user", "content": [{"type": "text", "text": "hi"}]}]},
        "output": {"choices": [{"message": {"role": "assistant", "content": "hello"}}]},
    }  # fmt: skip
    row = _present.summary(record, {"outcome": None}, _price)
    assert row["when"] == "2026-01-02 03:04:05"
    assert row["cost"] == "$0.002000"
    assert row["outcome"] == "no feedback"
    assert row["preview"] == "hi"
    assert row["latency_ms"] == "12"
    turns = _present.conversation(record)
    assert [(t["role"], t["text"]) for t in turns] == [
        ("system", "be brief"), ("user", "hi"), ("assistant", "hello")
    ]  # fmt: skip


def test_status_words() -> None:
    """Each rollout status reads as a sentence naming the share and the models."""
    state = {"status": "canary", "stage_index": 0, "stages": [0.05, 1.0],
             "variant_model": "ft:x", "control_model": "big"}  # fmt: skip
    assert _present.status_words(state, 0.05) == (
        "Canary: 5.0% of users get ft:x (stage 1 of 2); the rest stay on big."
    )
    assert "all traffic is on control (big)" in _present.status_words(
        {**state, "status": "rolled_back"}, 0.0
    )
