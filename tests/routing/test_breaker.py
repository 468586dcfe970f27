"""Circuit breaker per (route, variant): open, half-open probe, close, error rate."""

from __future__ import annotations

from typing import Any

from logos_shift.routing import validate_config
from logos_shift.routing.router import Decision, Router


class Clock:
    """A hand-driven monotonic clock."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def make(clock: Clock, breaker: dict[str, Any], model: str = "ft:mini") -> Router:
    r = Router(clock=clock)
    r.set_config(config(breaker, model))
    return r


def config(breaker: dict[str, Any], model: str = "ft:mini", version: int = 1) -> Any:
    return validate_config(
        {
            "version": version,
            "routes": {
                "support": {
                    "match": {"dataset": "support"},
                    "control": {"name": "base", "model": "gpt-4o"},
                    "variants": [{"name": "ft-1", "model": model}],
                    "rollout": {"variant_pct": 1.0},
                    "breaker": breaker,
                }
            },
        }
    )


def decide(r: Router, user: str = "u1") -> Decision:
    d = r.decide("support", "gpt-4o", {"user_id": user})
    assert d is not None
    return d


def test_consecutive_errors_open_the_breaker() -> None:
    """N consecutive variant errors send the variant's traffic to control."""
    clock = Clock()
    r = make(clock, {"consecutive_errors": 3, "cooldown_s": 60})
    for _ in range(2):
        r.record_result("support", "ft-1", ok=False)
    assert decide(r).arm == "variant"
    r.record_result("support", "ft-1", ok=False)
    d = decide(r)
    assert (d.arm, d.model, d.reason) == ("control", "gpt-4o", "breaker_open")
    state = r.stats()["breakers"]["support/ft-1"]
    assert state["state"] == "open"
    assert state["trips"] == 1
    assert state["open_remaining_s"] == 60.0


def test_a_success_resets_the_streak() -> None:
    """A success between errors resets the consecutive count, so the breaker stays closed."""
    clock = Clock()
    r = make(clock, {"consecutive_errors": 3})
    for ok in (False, False, True, False, False):
        r.record_result("support", "ft-1", ok=ok)
    assert decide(r).arm == "variant"
    assert r.stats()["breakers"]["support/ft-1"]["consecutive_errors"] == 2


def test_half_open_probe_success_closes() -> None:
    """After the cooldown one probe goes to the variant; its success closes the breaker."""
    clock = Clock()
    r = make(clock, {"consecutive_errors": 1, "cooldown_s": 300})
    r.record_result("support", "ft-1", ok=False)
    clock.t += 299
    assert decide(r).reason == "breaker_open"
    clock.t += 2
    probe = decide(r, "u1")
    assert (probe.arm, probe.reason, probe.model) == ("variant", "probe", "ft:mini")
    # Only one probe at a time: other calls still go to control.
    assert decide(r, "u2").reason == "breaker_open"
    assert r.stats()["breakers"]["support/ft-1"]["state"] == "half_open"
    r.record_result("support", "ft-1", ok=True)
    assert r.stats()["breakers"]["support/ft-1"]["state"] == "closed"
    d = decide(r, "u2")
    assert (d.arm, d.reason) == ("variant", "bucket")


def test_half_open_probe_failure_reopens() -> None:
    """A failed probe opens the breaker for another full cooldown."""
    clock = Clock()
    r = make(clock, {"consecutive_errors": 1, "cooldown_s": 100})
    r.record_result("support", "ft-1", ok=False)
    clock.t += 101
    assert decide(r).reason == "probe"
    r.record_result("support", "ft-1", ok=False)
    state = r.stats()["breakers"]["support/ft-1"]
    assert (state["state"], state["trips"]) == ("open", 2)
    clock.t += 99
    assert decide(r).reason == "breaker_open"
    clock.t += 2
    assert decide(r).reason == "probe"


def test_lost_probe_is_replaced_after_a_cooldown() -> None:
    """A probe that never reports back is replaced by a new probe one cooldown later."""
    clock = Clock()
    r = make(clock, {"consecutive_errors": 1, "cooldown_s": 50})
    r.record_result("support", "ft-1", ok=False)
    clock.t += 51
    assert decide(r).reason == "probe"
    clock.t += 49
    assert decide(r).reason == "breaker_open"
    clock.t += 2
    assert decide(r).reason == "probe"


def test_error_rate_over_window_opens() -> None:
    """More than error_rate failures among at least min_calls calls in the window opens it."""
    clock = Clock()
    r = make(clock, {"consecutive_errors": 0, "error_rate": 0.5, "min_calls": 10, "window_s": 60})
    for i in range(10):
        r.record_result("support", "ft-1", ok=i % 2 == 0)  # 50 %: not above the threshold
        clock.t += 1
    assert decide(r).arm == "variant"
    r.record_result("support", "ft-1", ok=False)  # 6 of 11 failed
    assert decide(r).reason == "breaker_open"


def test_error_rate_forgets_calls_outside_the_window() -> None:
    """Failures older than window_s no longer count toward the error rate."""
    clock = Clock()
    r = make(clock, {"consecutive_errors": 0, "error_rate": 0.5, "min_calls": 4, "window_s": 10})
    for _ in range(3):
        r.record_result("support", "ft-1", ok=False)
    clock.t += 30
    for _ in range(3):
        r.record_result("support", "ft-1", ok=True)
    r.record_result("support", "ft-1", ok=False)
    state = r.stats()["breakers"]["support/ft-1"]
    assert (state["state"], state["window_calls"], state["window_errors"]) == ("closed", 4, 1)


def test_min_calls_guards_the_rate_trigger() -> None:
    """Below min_calls even 100 % errors do not trip the rate trigger."""
    clock = Clock()
    r = make(clock, {"consecutive_errors": 0, "error_rate": 0.1, "min_calls": 20})
    for _ in range(19):
        r.record_result("support", "ft-1", ok=False)
    assert decide(r).arm == "variant"
    r.record_result("support", "ft-1", ok=False)
    assert decide(r).reason == "breaker_open"


def test_results_for_unknown_or_control_arms_are_ignored() -> None:
    """record_result for control, holdout or unknown names leaves no breaker state."""
    clock = Clock()
    r = make(clock, {"consecutive_errors": 1})
    for name in ("base", "holdout", "nope"):
        r.record_result("support", name, ok=False)
    r.record_result("other-route", "ft-1", ok=False)
    assert r.stats()["breakers"] == {}
    assert decide(r).arm == "variant"


def test_breaker_survives_an_unrelated_config_update() -> None:
    """A new config version with the same variant target keeps the breaker open."""
    clock = Clock()
    r = make(clock, {"consecutive_errors": 1})
    r.record_result("support", "ft-1", ok=False)
    r.set_config(config({"consecutive_errors": 1}, version=2))
    assert decide(r).reason == "breaker_open"


def test_new_model_under_the_same_variant_name_starts_closed() -> None:
    """Pointing the variant at a new model forgets the old model's breaker."""
    clock = Clock()
    r = make(clock, {"consecutive_errors": 1})
    r.record_result("support", "ft-1", ok=False)
    r.set_config(config({"consecutive_errors": 1}, model="ft:mini-v2", version=2))
    d = decide(r)
    assert (d.arm, d.model) == ("variant", "ft:mini-v2")
    assert r.stats()["breakers"] == {}


def test_kill_switch_wins_over_a_probe() -> None:
    """With the kill switch on, no probe is sent even when the cooldown is over."""
    clock = Clock()
    r = make(clock, {"consecutive_errors": 1, "cooldown_s": 10})
    r.record_result("support", "ft-1", ok=False)
    clock.t += 20
    cfg = config({"consecutive_errors": 1, "cooldown_s": 10}, version=2).to_json()
    cfg["routes"]["support"]["kill_switch"] = True
    r.set_config(validate_config(cfg))
    assert decide(r).reason == "kill_switch"
