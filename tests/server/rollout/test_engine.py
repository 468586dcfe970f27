"""Tests of the pure rollout state machine (no I/O, explicit clock)."""

from __future__ import annotations

import pytest

from logos_shift.server.rollout import engine as _rollout
from logos_shift.server.rollout.engine import (
    ArmStats,
    Evidence,
    Policy,
    RolloutState,
    Status,
    TransitionError,
)
from logos_shift.server.stats.sketch import LatencySketch

H = 3600.0


def _canary(policy: Policy | None = None) -> RolloutState:
    pol = policy or Policy()
    st = _rollout.start("support", "gpt-4o", 0.0, pol, job_id="job-1")
    return _rollout.on_training_finished(st, True, "ft:x", 0.0, pol).state


def _ev(vn: int, vs: float, cn: int, cs: float, **kw: int) -> Evidence:
    return Evidence(
        control=ArmStats(calls=kw.get("cc", cn), errors=kw.get("ce", 0), feedback=cn, successes=cs),
        variant=ArmStats(calls=kw.get("vc", vn), errors=kw.get("ve", 0), feedback=vn, successes=vs),
    )


def test_start_is_training_with_zero_share() -> None:
    """A new rollout trains and sends nobody to the variant."""
    st = _rollout.start("r", "m", 5.0, Policy())
    assert st.status == Status.TRAINING
    assert _rollout.variant_pct(st) == 0.0


def test_training_success_enters_first_canary_stage() -> None:
    """A successful job stores the model and starts the canary at 1 %."""
    st = _canary()
    assert st.status == Status.CANARY
    assert st.variant_model == "ft:x"
    assert _rollout.variant_pct(st) == 0.01


def test_training_failure_keeps_route_on_control() -> None:
    """A failed job ends in 'failed' with the reason and a zero variant share."""
    st = _rollout.start("r", "m", 0.0, Policy())
    d = _rollout.on_training_finished(st, False, None, 1.0, Policy(), detail="timed out")
    assert d.state.status == Status.FAILED
    assert "timed out" in d.state.reason
    assert _rollout.variant_pct(d.state) == 0.0


def test_offline_eval_gate() -> None:
    """With offline_eval on, the canary starts only if the judge accepts enough examples."""
    pol = Policy(offline_eval=True, offline_eval_gate=0.8)
    st = _rollout.on_training_finished(_rollout.start("r", "m", 0, pol), True, "ft", 0, pol).state
    assert st.status == Status.EVALUATING
    assert _rollout.on_offline_eval(st, 9, 10, 1, pol).state.status == Status.CANARY
    bad = _rollout.on_offline_eval(st, 5, 10, 1, pol)
    assert bad.state.status == Status.ROLLED_BACK
    assert bad.numbers["rate"] == 0.5


def test_hold_until_samples_and_time() -> None:
    """A stage waits for min_per_arm feedback per arm and min_stage_s, saying which is missing."""
    st = _canary()
    d = _rollout.evaluate(st, Policy(), _ev(50, 42, 5000, 4250), 2 * H)
    assert d.action == "hold"
    assert "waiting for feedback" in d.reasons[0]
    d = _rollout.evaluate(st, Policy(), _ev(150, 128, 15000, 12750), 60.0)
    assert d.action == "hold"
    assert "stage age" in d.reasons[0]


def test_advance_when_clean() -> None:
    """Enough samples, enough time and no breach advance one stage and reset the stage counts."""
    st = _canary()
    ev = _ev(150, 128, 15000, 12750)
    d = _rollout.evaluate(st, Policy(), ev, 2 * H)
    assert d.action == "advance"
    assert _rollout.variant_pct(d.state) == 0.05
    assert d.state.base.variant_feedback == 150
    assert d.event(2 * H)["from"] == "canary"
    again = _rollout.evaluate(d.state, Policy(), ev, 4 * H)
    assert again.action == "hold"


def test_rollback_on_feedback_harm() -> None:
    """A variant clearly worse than control by more than the margin is rolled back at once."""
    d = _rollout.evaluate(_canary(), Policy(), _ev(400, 240, 4000, 3400), 60.0)
    assert d.action == "rollback"
    assert d.state.status == Status.ROLLED_BACK
    assert _rollout.variant_pct(d.state) == 0.0
    assert d.numbers["feedback_diff"]["upper"] < -0.05
    assert "feedback success" in d.reasons[0]


def test_rollback_on_error_rate_with_fallbacks() -> None:
    """Variant errors (fallbacks included) beyond the allowed rise roll back."""
    ev = _ev(500, 425, 5000, 4250, ve=100, ce=50)
    d = _rollout.evaluate(_canary(), Policy(), ev, 60.0)
    assert d.action == "rollback"
    assert "error rate" in d.reasons[0]


def test_rollback_on_latency() -> None:
    """A variant whose p95 latency is far beyond 1.5x control's rolls back."""
    ev = Evidence(
        control=ArmStats(
            calls=200, feedback=200, successes=170, latency=LatencySketch.of((100.0,) * 200)
        ),
        variant=ArmStats(
            calls=200, feedback=200, successes=170, latency=LatencySketch.of((400.0,) * 200)
        ),
    )
    d = _rollout.evaluate(_canary(), Policy(), ev, 60.0)
    assert d.action == "rollback"
    assert d.numbers["latency"]["control_p95_ms"] == 100.0
    assert "latency" in d.reasons[0]


def test_rollback_on_cost() -> None:
    """A variant costing twice control per call breaches cost_ratio_max 1.25."""
    ev = Evidence(
        control=ArmStats(
            calls=300,
            feedback=300,
            successes=255,
            cost_n=300,
            cost_sum=300 * 0.01,
            cost_sumsq=300 * 0.0001 + 1e-6,
        ),
        variant=ArmStats(
            calls=300,
            feedback=300,
            successes=255,
            cost_n=300,
            cost_sum=300 * 0.02,
            cost_sumsq=300 * 0.0004 + 1e-6,
        ),
    )
    d = _rollout.evaluate(_canary(), Policy(), ev, 60.0)
    assert d.action == "rollback"
    assert "cost per call" in d.reasons[0]


def test_no_guardrail_fires_below_min_harm_n() -> None:
    """A handful of bad feedback events is not enough to roll back."""
    d = _rollout.evaluate(_canary(), Policy(), _ev(10, 0, 1000, 850), 60.0)
    assert d.action == "hold"


def test_promotion_requires_non_inferiority() -> None:
    """From the 50 % stage, promotion needs lower bound > -margin; otherwise it waits."""
    pol = Policy(min_stage_s=0)
    st = _canary(pol)
    from dataclasses import replace

    st = replace(st, stage_index=4)
    weak = _rollout.evaluate(st, pol, _ev(150, 125, 150, 128), 10.0)
    assert weak.action == "hold"
    assert "non-inferiority" in weak.reasons[0]
    strong = _rollout.evaluate(st, pol, _ev(3000, 2560, 3000, 2550), 10.0)
    assert strong.action == "promote"
    assert strong.state.status == Status.PROMOTED
    assert _rollout.variant_pct(strong.state) == 1.0
    assert strong.numbers["non_inferiority"]["lower"] > -0.05


def test_srm_pauses() -> None:
    """A sample-ratio mismatch pauses the rollout instead of advancing."""
    st = _canary()
    d = _rollout.evaluate(st, Policy(), _ev(400, 340, 4000, 3400, vc=400, cc=4000), 2 * H)
    assert d.action == "pause"
    assert d.state.status == Status.PAUSED
    assert _rollout.variant_pct(d.state) == 0.01


def test_paused_still_rolls_back_on_harm() -> None:
    """Guardrails keep running while paused; a paused harmful variant is rolled back."""
    st = _rollout.apply_action(_canary(), "pause", 1.0).state
    assert _rollout.evaluate(st, Policy(), _ev(150, 128, 1500, 1275), 2 * H).action == "hold"
    assert _rollout.evaluate(st, Policy(), _ev(400, 200, 4000, 3400), 2 * H).action == "rollback"


def test_manual_actions() -> None:
    """pause, resume, promote and rollback move the state; invalid ones raise clearly."""
    st = _canary()
    paused = _rollout.apply_action(st, "pause", 1.0, by="alice").state
    assert paused.reason == "paused by alice"
    resumed = _rollout.apply_action(paused, "resume", 2.0, _ev(10, 9, 100, 85)).state
    assert resumed.status == Status.CANARY
    assert resumed.base.variant_feedback == 10
    with pytest.raises(TransitionError, match="cannot resume"):
        _rollout.apply_action(resumed, "resume", 3.0)
    promoted = _rollout.apply_action(resumed, "promote", 3.0).state
    assert promoted.status == Status.PROMOTED
    back = _rollout.apply_action(promoted, "rollback", 4.0).state
    assert back.status == Status.ROLLED_BACK
    assert back.version == promoted.version + 1
    with pytest.raises(TransitionError):
        _rollout.apply_action(back, "rollback", 5.0)


def test_training_cannot_be_promoted() -> None:
    """Promoting a rollout without a trained model is refused."""
    with pytest.raises(TransitionError):
        _rollout.apply_action(_rollout.start("r", "m", 0, Policy()), "promote", 1.0)


def test_evaluate_outside_canary_holds() -> None:
    """Training, failed and promoted rollouts are not evaluated."""
    st = _rollout.start("r", "m", 0, Policy())
    assert _rollout.evaluate(st, Policy(), _ev(1, 1, 1, 1), 1.0).action == "hold"


def test_state_json_round_trip() -> None:
    """A state survives to_json / from_json unchanged."""
    st = _rollout.apply_action(_canary(), "pause", 1.0).state
    assert RolloutState.from_json(st.to_json()) == st


def test_policy_validation_and_json() -> None:
    """Policies reject bad stages, margins and unknown keys, and round-trip through JSON."""
    with pytest.raises(ValueError, match=r"ending at 1\.0"):
        Policy(stages=(0.1, 0.5))
    with pytest.raises(ValueError, match="increase"):
        Policy(stages=(0.5, 0.1, 1.0))
    with pytest.raises(ValueError, match="margin"):
        Policy(margin=0)
    with pytest.raises(ValueError, match="unknown keys"):
        Policy.from_json({"marginn": 0.1})
    for bad in ({"margin": "x"}, {"stages": "abc"}, {"offline_eval": 1}, {"alpha": True}):
        with pytest.raises(ValueError, match="invalid rollout policy"):
            Policy.from_json(bad)
    pol = Policy(margin=0.02, stages=(0.1, 1.0))
    assert Policy.from_json(pol.to_json()) == pol


def test_srm_uses_the_calls_after_the_grace_period_when_given() -> None:
    """Evidence.stage_calls (calls after srm_grace_s) replaces the baseline counts in the SRM."""
    pol = Policy(stages=(0.1, 0.5, 1.0), min_per_arm=10, min_stage_s=0)
    st = _rollout.on_training_finished(_rollout.start("r", "base", 0.0, pol), True, "ft", 0.0, pol)
    # At a 10 % share, 300 of 1200 calls on the variant: counted from the stage's
    # baseline that is a mismatch; counted after the grace period it is not.
    lagging = Evidence(
        control=ArmStats(calls=900, feedback=900, successes=800),
        variant=ArmStats(calls=300, feedback=300, successes=270),
    )
    assert _rollout.evaluate(st.state, pol, lagging, 10.0).action == "pause"
    clean = Evidence(control=lagging.control, variant=lagging.variant, stage_calls=(20, 180))
    assert _rollout.evaluate(st.state, pol, clean, 10.0).action == "advance"
    skewed = Evidence(control=lagging.control, variant=lagging.variant, stage_calls=(100, 100))
    d = _rollout.evaluate(st.state, pol, skewed, 10.0)
    assert d.action == "pause"
    assert "100 variant vs 100 control calls" in d.reasons[0]
    with pytest.raises(ValueError, match="srm_grace_s"):
        Policy(srm_grace_s=-1)
    assert Policy.from_json({"srm_grace_s": 30}).srm_grace_s == 30


def test_srm_counts_units_when_the_evidence_has_them() -> None:
    """Evidence.stage_units (distinct units) replaces call counts in the SRM check."""
    pol = Policy(stages=(0.1, 0.5, 1.0), min_per_arm=10, min_stage_s=0)
    st = _rollout.on_training_finished(_rollout.start("r", "base", 0.0, pol), True, "ft", 0.0, pol)
    arms = {
        "control": ArmStats(calls=180, feedback=180, successes=160),
        "variant": ArmStats(calls=418, feedback=418, successes=370),
    }
    # Two heavy users: 418 variant calls vs 180 control calls, but 20 vs 180 users.
    heavy = Evidence(**arms, stage_calls=(418, 180), stage_units=(20, 180))
    d = _rollout.evaluate(st.state, pol, heavy, 10.0)
    assert d.action == "advance", d.reasons
    assert d.numbers["srm"] == {
        "counted": "units",
        "variant": 20,
        "control": 180,
        "expected_variant_share": 0.1,
        "calls": {"variant": 418, "control": 180},
    }
    # The same calls without units: the call counts decide, and they mismatch.
    by_calls = _rollout.evaluate(st.state, pol, Evidence(**arms, stage_calls=(418, 180)), 10.0)
    assert by_calls.action == "pause"
    assert "418 variant vs 180 control calls" in by_calls.reasons[0]
    # A real mismatch in users (3x the variant's share) pauses, whatever the calls say.
    skewed = Evidence(**arms, stage_calls=(60, 540), stage_units=(60, 140))
    d = _rollout.evaluate(st.state, pol, skewed, 10.0)
    assert d.action == "pause"
    assert "60 variant vs 140 control units" in d.reasons[0]
    assert d.numbers["srm"]["counted"] == "units"
