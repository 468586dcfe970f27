"""What wakes the rollout loop: ingest arrivals per dataset, and the loop's timings."""

from __future__ import annotations

import pytest

from logos_shift.server.app import loop_options
from logos_shift.server.events import ANY_DATASET, Events, datasets_of


def test_a_batch_names_its_call_datasets_and_feedback_as_any() -> None:
    """Calls name their dataset; feedback (whose dataset is its call's) stands for any."""
    assert datasets_of([{"type": "call", "dataset": "a"}, {"type": "call", "dataset": "b"}]) == {
        "a",
        "b",
    }
    assert datasets_of([{"type": "feedback", "target": "x"}]) == {ANY_DATASET}
    assert datasets_of([]) == frozenset()


def test_subscribers_hear_arrivals_and_a_failing_one_does_not_fail_ingest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Every subscriber is told; one that raises is logged; unsubscribing stops the calls."""
    events, heard = Events(), []

    def broken(_pid: int, _ds: frozenset[str]) -> None:
        raise RuntimeError("bug")

    events.subscribe(broken)
    stop = events.subscribe(lambda pid, ds: heard.append((pid, ds)))
    events.records_arrived(1, frozenset({"a"}))
    events.records_arrived(1, frozenset())  # nothing arrived: nothing published
    stop()
    events.records_arrived(2, frozenset({"b"}))
    assert heard == [(1, frozenset({"a"}))]
    assert "an ingest subscriber failed" in caplog.text


def test_loop_timings_come_from_the_environment_or_defaults() -> None:
    """5 s, 1 s and 10 s unless $LOGOS_SHIFT_ROLLOUT_* say otherwise; nonsense is refused."""
    assert loop_options({}) == {"interval_s": 5.0, "debounce_s": 1.0, "lease_s": 10.0}
    env = {"LOGOS_SHIFT_ROLLOUT_DEBOUNCE_S": "0.2", "LOGOS_SHIFT_ROLLOUT_LEASE_S": "3"}
    assert loop_options(env) == {"interval_s": 5.0, "debounce_s": 0.2, "lease_s": 3.0}
    with pytest.raises(ValueError, match="LOGOS_SHIFT_ROLLOUT_INTERVAL_S"):
        loop_options({"LOGOS_SHIFT_ROLLOUT_INTERVAL_S": "0"})
    with pytest.raises(ValueError, match="LOGOS_SHIFT_ROLLOUT_LEASE_S"):
        loop_options({"LOGOS_SHIFT_ROLLOUT_LEASE_S": "ten"})
