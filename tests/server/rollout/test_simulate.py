"""Acceptance simulation: 200+ deterministic runs per scenario through the real engine."""

from __future__ import annotations

import pytest

from logos_shift.server.rollout.simulate import simulate

RUNS = 200


@pytest.mark.parametrize(("name", "p_control", "p_variant"), [("10 points worse", 0.85, 0.75)])
def test_much_worse_variant_is_rolled_back(name: str, p_control: float, p_variant: float) -> None:
    """A variant 10 points worse than control is rolled back in >= 99 % of runs."""
    res = simulate(p_control, p_variant, runs=RUNS, seed=1)
    print(name, res.summary())
    assert res.rate("rollback") >= 0.99
    assert res.rate("promote") == 0.0


@pytest.mark.parametrize(
    ("name", "p_control", "p_variant"), [("equal", 0.85, 0.85), ("better", 0.85, 0.90)]
)
def test_equal_or_better_variant_is_promoted(name: str, p_control: float, p_variant: float) -> None:
    """An equal or better variant is promoted in >= 95 % of runs."""
    res = simulate(p_control, p_variant, runs=RUNS, seed=2)
    print(name, res.summary())
    assert res.rate("promote") >= 0.95


@pytest.mark.parametrize(
    ("name", "p_control", "p_variant", "steps"),
    [("at the margin", 0.85, 0.80, 60), ("beyond the margin", 0.85, 0.78, 300)],
)
def test_variant_worse_than_margin_is_rarely_promoted(
    name: str, p_control: float, p_variant: float, steps: int
) -> None:
    """A variant at or beyond the margin is promoted in <= 5 % of runs."""
    res = simulate(p_control, p_variant, runs=RUNS, seed=3, max_steps=steps)
    print(name, res.summary())
    assert res.rate("promote") <= 0.05


def test_error_guardrail_rolls_back_failing_variant() -> None:
    """A variant with 10 % errors (fallbacks) against 1 % is rolled back in >= 99 % of runs."""
    res = simulate(0.85, 0.85, runs=RUNS, seed=4, variant_error_rate=0.10)
    assert res.rate("rollback") >= 0.99


def test_simulation_is_deterministic() -> None:
    """The same seed gives the same runs."""
    assert simulate(0.85, 0.8, runs=5, seed=9).runs == simulate(0.85, 0.8, runs=5, seed=9).runs
