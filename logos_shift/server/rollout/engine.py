"""The rollout state machine of one route: pure functions over plain values.

States: ``training`` → ``evaluating`` (optional offline evaluation) → ``canary``
(stage by stage, default 1 → 5 → 10 → 25 → 50 % of units on the variant) →
``promoted`` (100 %); plus ``paused``, ``rolled_back`` and ``failed`` (training
failed: the route never left control).

:func:`evaluate` is called on every new batch of evidence.  It rolls back as
soon as an always-valid bound shows harm (feedback success worse than control by
more than ``margin``; error rate, p95 latency or cost per call beyond limits),
pauses on a sample-ratio mismatch (counted in distinct assignment units when
the evidence has them: units, not calls, are what the router assigns), advances
a stage when both arms have ``min_per_arm`` feedback samples *in this stage*,
``min_stage_s`` has passed and nothing is breached, and promotes to 100 % only on non-inferiority
(``lower bound of p_variant - p_control > -margin``).  Harm tests split ``alpha``
across the four guardrails (Bonferroni); the promotion test uses all of it.

Nothing here does I/O or reads a clock: ``now`` is an argument, so the engine is
replayed deterministically by the simulation tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from logos_shift.server.stats import sequential
from logos_shift.server.stats.sketch import LatencySketch

from .types import ArmStats, Evidence, Policy, RolloutState, Status, TransitionError

__all__ = [
    "ArmStats",
    "Decision",
    "Evidence",
    "Policy",
    "RolloutState",
    "Status",
    "TransitionError",
    "apply_action",
    "evaluate",
    "on_offline_eval",
    "on_training_finished",
    "start",
    "variant_pct",
]

_HARM_TESTS = 4  # feedback, errors, latency, cost: Bonferroni over these


@dataclass(frozen=True)
class Decision:
    """The outcome of one evaluation or action.

    Attributes:
        action: ``hold``, ``advance``, ``promote``, ``rollback``, ``pause``,
            ``resume``, ``start_canary``, ``start_eval`` or ``fail``.
        state: the state after the decision (the input state on ``hold``).
        previous: the state before it.
        reasons: plain-language reasons, most important first.
        numbers: the figures behind the decision (bounds, counts, thresholds).
    """

    action: str
    state: RolloutState
    previous: RolloutState
    reasons: tuple[str, ...]
    numbers: dict[str, Any] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        """Whether the decision is a transition (anything but ``hold``)."""
        return self.action != "hold"

    def event(self, now: float) -> dict[str, Any]:
        """Return the JSON event describing this transition.

        Args:
            now: the event time (Unix seconds).

        Returns:
            ``{ts, route, action, from, to, stage, variant_pct, reasons, numbers}``.
        """
        return {
            "ts": now,
            "route": self.state.route,
            "action": self.action,
            "from": self.previous.status.value,
            "to": self.state.status.value,
            "stage": self.state.stage_index,
            "variant_pct": variant_pct(self.state),
            "reasons": list(self.reasons),
            "numbers": self.numbers,
        }


def variant_pct(state: RolloutState) -> float:
    """Return the share of units the route config should send to the variant.

    Args:
        state: the rollout state.

    Returns:
        The current stage's share in ``canary`` and ``paused``, 1.0 when
        ``promoted``, otherwise 0.0 (training, evaluating, failed, rolled back).
    """
    if state.status == Status.CANARY or (
        state.status == Status.PAUSED and state.paused_from == Status.CANARY
    ):
        return state.stages[state.stage_index]
    if state.status == Status.PROMOTED:
        return 1.0
    return 0.0


def start(
    route: str, control_model: str | None, now: float, policy: Policy, job_id: str | None = None
) -> RolloutState:
    """Create the state of a rollout whose fine-tuning job was just launched.

    Args:
        route: the route name.
        control_model: the model the route serves today.
        now: Unix time.
        policy: the rollout policy (its stages are copied into the state).
        job_id: the fine-tuning job id, if any.

    Returns:
        A ``training`` state.
    """
    return RolloutState(
        route=route,
        status=Status.TRAINING,
        stages=policy.stages,
        control_model=control_model,
        job_id=job_id,
        since=now,
        reason="fine-tuning job started",
    )


def _to(state: RolloutState, now: float, **changes: Any) -> RolloutState:
    return replace(state, since=now, version=state.version + 1, **changes)


def _canary_entry(
    state: RolloutState, ev: Evidence | None, now: float, reason: str
) -> RolloutState:
    ev = ev or Evidence()
    return _to(
        state,
        now,
        status=Status.CANARY,
        stage_index=0,
        paused_from=None,
        reason=reason,
        base=ev.baseline(),
    )


def on_training_finished(
    state: RolloutState,
    ok: bool,
    model: str | None,
    now: float,
    policy: Policy,
    detail: str = "",
) -> Decision:
    """Move a ``training`` rollout on once its job has ended.

    Args:
        state: a ``training`` state.
        ok: whether the job succeeded and produced a model.
        model: the fine-tuned model's name.
        now: Unix time.
        policy: the policy (decides whether offline evaluation runs).
        detail: why the job failed, shown in the event.

    Returns:
        ``start_eval`` / ``start_canary`` on success, ``fail`` otherwise (the
        route stays on control).

    Raises:
        TransitionError: the state is not ``training``.
    """
    if state.status != Status.TRAINING:
        raise TransitionError(f"route {state.route!r} is {state.status.value}, not training")
    if not ok or not model:
        why = detail or "the job produced no model"
        new = _to(state, now, status=Status.FAILED, reason=f"fine-tuning failed: {why}")
        return Decision("fail", new, state, (new.reason, "route stays on control"))
    if policy.offline_eval:
        new = _to(state, now, status=Status.EVALUATING, variant_model=model, reason="evaluating")
        return Decision("start_eval", new, state, (f"model {model} ready; offline evaluation",))
    new = _canary_entry(replace(state, variant_model=model), None, now, "canary started")
    return Decision("start_canary", new, state, (f"model {model} ready; canary at stage 1",))


def on_offline_eval(
    state: RolloutState, passed: int, total: int, now: float, policy: Policy
) -> Decision:
    """Gate the canary on the offline evaluation of the held-out test split.

    Args:
        state: an ``evaluating`` state.
        passed: test examples the judge accepted (win or tie).
        total: test examples judged.
        now: Unix time.
        policy: the policy (``offline_eval_gate``).

    Returns:
        ``start_canary`` when ``passed / total >= gate``, else ``rollback``.

    Raises:
        TransitionError: the state is not ``evaluating``.
    """
    if state.status != Status.EVALUATING:
        raise TransitionError(f"route {state.route!r} is {state.status.value}, not evaluating")
    rate = passed / total if total else 0.0
    numbers = {"passed": passed, "total": total, "rate": round(rate, 4)}
    numbers["gate"] = policy.offline_eval_gate
    if total and rate >= policy.offline_eval_gate:
        reason = (
            f"offline eval passed {passed}/{total} ({rate:.1%} >= {policy.offline_eval_gate:.0%})"
        )
        return Decision(
            "start_canary", _canary_entry(state, None, now, reason), state, (reason,), numbers
        )
    reason = f"offline eval failed {passed}/{total} ({rate:.1%} < {policy.offline_eval_gate:.0%})"
    new = _to(state, now, status=Status.ROLLED_BACK, reason=reason)
    return Decision("rollback", new, state, (reason,), numbers)


def _p95(sketch: LatencySketch) -> float:
    return sketch.quantile(95) or 0.0


def _harm(policy: Policy, ev: Evidence) -> tuple[list[str], dict[str, Any]]:
    """Run the guardrail tests; return (breaches, numbers)."""
    a = policy.alpha / _HARM_TESTS
    n_star = policy.seq_tuning_n
    v, c = ev.variant, ev.control
    breaches: list[str] = []
    numbers: dict[str, Any] = {
        "variant": {"feedback": v.feedback, "success_rate": _rate(v.successes, v.feedback)},
        "control": {"feedback": c.feedback, "success_rate": _rate(c.successes, c.feedback)},
    }
    fb = sequential.diff_of_proportions(v.successes, v.feedback, c.successes, c.feedback, a, n_star)
    numbers["feedback_diff"] = fb.to_json()
    if min(v.feedback, c.feedback) >= policy.min_harm_n and fb.upper < -policy.margin:
        breaches.append(
            f"feedback success worse than control by more than {policy.margin:.3g}: "
            f"{_rate(v.successes, v.feedback):.3f} vs {_rate(c.successes, c.feedback):.3f}, "
            f"upper bound of the difference {fb.upper:+.4f} < {-policy.margin:+.4f}"
        )
    er = sequential.diff_of_proportions(v.errors, v.calls, c.errors, c.calls, a, n_star)
    numbers["error_diff"] = er.to_json()
    if min(v.calls, c.calls) >= policy.min_harm_n and er.lower > policy.error_rate_max_delta:
        breaches.append(
            f"error rate (fallbacks included) {_rate(v.errors, v.calls):.3f} vs "
            f"{_rate(c.errors, c.calls):.3f}: lower bound of the difference {er.lower:+.4f} "
            f"> {policy.error_rate_max_delta:+.4f}"
        )
    if min(v.latency.n, c.latency.n) >= policy.min_harm_n:
        limit = _p95(c.latency) * policy.p95_latency_ratio_max
        over = v.latency.count_above(limit)
        lat = sequential.proportion_above(over, v.latency.n, a, n_star)
        numbers["latency"] = {
            "control_p95_ms": round(_p95(c.latency), 2),
            "variant_p95_ms": round(_p95(v.latency), 2),
            "limit_ms": round(limit, 2),
            "share_over_limit": lat.to_json(),
        }
        if lat.lower > 0.05:
            breaches.append(
                f"p95 latency beyond {policy.p95_latency_ratio_max:g}x control "
                f"({_p95(v.latency):.0f} ms vs limit {limit:.0f} ms): lower bound of the "
                f"share over the limit {lat.lower:.3f} > 0.05"
            )
    if min(v.cost_n, c.cost_n) >= policy.min_harm_n:
        cost = sequential.diff_of_means(
            v.cost_sum, v.cost_sumsq, v.cost_n, c.cost_sum, c.cost_sumsq, c.cost_n,
            a, n_star, scale_b=policy.cost_ratio_max,
        )  # fmt: skip
        numbers["cost_contrast"] = cost.to_json()
        if cost.lower > 0:
            breaches.append(
                f"cost per call {v.cost_sum / v.cost_n:.6f} vs control {c.cost_sum / c.cost_n:.6f}"
                f" beyond {policy.cost_ratio_max:g}x (lower bound {cost.lower:+.6f} > 0)"
            )
    return breaches, numbers


def _rate(x: float, n: int) -> float:
    return round(x / n, 4) if n else 0.0


def evaluate(state: RolloutState, policy: Policy, evidence: Evidence, now: float) -> Decision:
    """Decide what a route's rollout does given all evidence since the canary began.

    Args:
        state: the current state.
        policy: the rollout policy.
        evidence: cumulative per-arm statistics since the canary started
            (fallbacks already counted as variant errors).
        now: Unix time.

    Returns:
        The decision; ``hold`` when nothing changes, with the reasons why.
    """
    if variant_pct(state) == 0.0 or state.status == Status.PROMOTED:
        return Decision("hold", state, state, (f"{state.status.value}: nothing to evaluate",))
    breaches, numbers = _harm(policy, evidence)
    pct = state.stages[state.stage_index]
    numbers["stage"] = {"index": state.stage_index, "variant_pct": pct}
    if breaches:
        new = _to(state, now, status=Status.ROLLED_BACK, paused_from=None, reason=breaches[0])
        return Decision("rollback", new, state, tuple(breaches), numbers)
    if state.status == Status.PAUSED:
        return Decision("hold", state, state, ("paused; guardrails still watched",), numbers)
    base = state.base
    stage_v_fb = evidence.variant.feedback - base.variant_feedback
    stage_c_fb = evidence.control.feedback - base.control_feedback
    stage_v_calls = evidence.variant.calls - base.variant_calls
    stage_c_calls = evidence.control.calls - base.control_calls
    share = pct / (pct + max(0.0, 1.0 - pct - policy.holdout_pct))
    # The SRM test needs independent draws: distinct units (plus unit-less calls)
    # when the evidence has them, else calls.
    counted = "units" if evidence.stage_units is not None else "calls"
    srm_v, srm_c = evidence.stage_units or evidence.stage_calls or (stage_v_calls, stage_c_calls)
    srm_p = sequential.srm_p_value(srm_v, srm_c, share)
    elapsed = now - state.since
    numbers["stage"].update(
        {"variant_feedback": stage_v_fb, "control_feedback": stage_c_fb, "elapsed_s": elapsed}
    )
    numbers["srm_p"] = round(srm_p, 6)
    numbers["srm"] = {
        "counted": counted,
        "variant": srm_v,
        "control": srm_c,
        "expected_variant_share": round(share, 6),
    }
    if evidence.stage_calls is not None:
        numbers["srm"]["calls"] = {"variant": evidence.stage_calls[0],
                                   "control": evidence.stage_calls[1]}  # fmt: skip
    waits: list[str] = []
    if min(stage_v_fb, stage_c_fb) < policy.min_per_arm:
        waits.append(
            f"waiting for feedback: {stage_v_fb} variant / {stage_c_fb} control in this stage "
            f"(need {policy.min_per_arm} each)"
        )
    if elapsed < policy.min_stage_s:
        waits.append(f"stage age {elapsed:.0f}s < {policy.min_stage_s:.0f}s")
    # Checked once per stage (when it could advance), not on every look, so repeated
    # peeks do not inflate its false-alarm rate.
    if not waits and srm_p < policy.srm_p_min:
        reason = (
            f"sample-ratio mismatch: {srm_v} variant vs {srm_c} control {counted} "
            f"for a {share:.1%} share (p={srm_p:.2g} < {policy.srm_p_min:g})"
        )
        new = _to(state, now, status=Status.PAUSED, paused_from=Status.CANARY, reason=reason)
        return Decision("pause", new, state, (reason,), numbers)
    last = state.stage_index + 1 >= len(state.stages) - 1
    if last and not waits:
        v, c = evidence.variant, evidence.control
        ni = sequential.diff_of_proportions(
            v.successes, v.feedback, c.successes, c.feedback, policy.alpha, policy.seq_tuning_n
        )
        numbers["non_inferiority"] = ni.to_json()
        if ni.lower <= -policy.margin:
            waits.append(
                f"non-inferiority not shown yet: lower bound {ni.lower:+.4f} "
                f"<= {-policy.margin:+.4f}"
            )
        else:
            reason = (
                f"non-inferior: success {_rate(v.successes, v.feedback):.3f} vs "
                f"{_rate(c.successes, c.feedback):.3f}, lower bound {ni.lower:+.4f} > "
                f"{-policy.margin:+.4f}"
            )
            new = _to(state, now, status=Status.PROMOTED, stage_index=len(state.stages) - 1,
                      reason=reason)  # fmt: skip
            return Decision("promote", new, state, (reason,), numbers)
    if waits:
        return Decision("hold", state, state, tuple(waits), numbers)
    nxt = state.stage_index + 1
    reason = (
        f"stage {state.stage_index + 1} ({pct:.0%}) clean with {stage_v_fb}/{stage_c_fb} feedback; "
        f"advancing to {state.stages[nxt]:.0%}"
    )
    new = _to(state, now, stage_index=nxt, reason=reason, base=evidence.baseline())
    return Decision("advance", new, state, (reason,), numbers)


def apply_action(
    state: RolloutState,
    action: str,
    now: float,
    evidence: Evidence | None = None,
    by: str = "admin",
) -> Decision:
    """Apply a manual action: ``pause``, ``resume``, ``rollback`` or ``promote``.

    Args:
        state: the current state.
        action: the action name.
        now: Unix time.
        evidence: current evidence (``resume`` restarts the stage's counts from it).
        by: who asked, for the event's reason.

    Returns:
        The decision.

    Raises:
        TransitionError: the action does not apply in this state (e.g. resuming a
            rollout that is not paused).
    """
    s = state.status
    if action == "pause" and s in (Status.TRAINING, Status.EVALUATING, Status.CANARY):
        new = _to(state, now, status=Status.PAUSED, paused_from=s, reason=f"paused by {by}")
    elif action == "resume" and s == Status.PAUSED and state.paused_from is not None:
        base = (
            (evidence or Evidence()).baseline()
            if state.paused_from == Status.CANARY
            else state.base
        )
        new = _to(state, now, status=state.paused_from, paused_from=None, base=base,
                  reason=f"resumed by {by}")  # fmt: skip
    elif action == "rollback" and s not in (Status.ROLLED_BACK, Status.FAILED):
        new = _to(state, now, status=Status.ROLLED_BACK, paused_from=None,
                  reason=f"rolled back by {by}")  # fmt: skip
    elif action == "promote" and state.variant_model and s in (
        Status.EVALUATING, Status.CANARY, Status.PAUSED
    ):  # fmt: skip
        new = _to(state, now, status=Status.PROMOTED, paused_from=None,
                  stage_index=len(state.stages) - 1, reason=f"promoted by {by}")  # fmt: skip
    else:
        raise TransitionError(f"cannot {action} route {state.route!r}: it is {s.value}")
    return Decision(action, new, state, (new.reason,))
