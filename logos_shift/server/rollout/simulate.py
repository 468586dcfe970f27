"""Monte Carlo simulation of rollouts through the real engine.

Answers "how often does the engine promote / roll back a variant whose true
success rate is p, and after how many feedback events?" for a policy.  Used by
the acceptance tests (``tests/rollout/test_rollout_simulation.py``) and the benchmark
(``benchmarks/bench_rollout_sim.py``).  Needs numpy (a dev dependency only).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

from . import engine
from .types import ArmStats, Evidence, Policy, Status

__all__ = ["RunResult", "ScenarioResult", "simulate", "simulate_run"]


@dataclass(frozen=True)
class RunResult:
    """One simulated rollout.

    Attributes:
        outcome: ``promote``, ``rollback``, ``pause`` or ``undecided``.
        variant_feedback: variant feedback events seen when it ended.
        control_feedback: control feedback events seen when it ended.
        stage: the stage index it ended in.
    """

    outcome: str
    variant_feedback: int
    control_feedback: int
    stage: int


@dataclass
class ScenarioResult:
    """Aggregate of many runs of one scenario."""

    runs: list[RunResult] = field(default_factory=list)

    def rate(self, outcome: str) -> float:
        """Return the share of runs that ended with ``outcome``."""
        return sum(r.outcome == outcome for r in self.runs) / len(self.runs)

    def samples(self, which: str = "variant") -> tuple[float, float]:
        """Return (median, p90) feedback events to a decision over decided runs.

        Args:
            which: ``variant`` (variant arm) or ``total`` (both arms).

        Returns:
            ``(median, p90)``; ``(nan, nan)`` when no run was decided.
        """
        xs = sorted(
            r.variant_feedback + (r.control_feedback if which == "total" else 0)
            for r in self.runs
            if r.outcome in ("promote", "rollback")
        )
        if not xs:
            return (float("nan"), float("nan"))
        return (statistics.median(xs), float(xs[min(len(xs) - 1, int(0.9 * len(xs)))]))

    def summary(self) -> dict[str, Any]:
        """Return rates and sample sizes as a dict."""
        med, p90 = self.samples()
        tmed, tp90 = self.samples("total")
        return {
            "runs": len(self.runs),
            "promote": self.rate("promote"),
            "rollback": self.rate("rollback"),
            "undecided": self.rate("undecided") + self.rate("pause"),
            "variant_median": med,
            "variant_p90": p90,
            "total_median": tmed,
            "total_p90": tp90,
        }


def simulate_run(
    seed: int,
    p_control: float,
    p_variant: float,
    policy: Policy,
    events_per_step: int = 1000,
    step_s: float = 3600.0,
    max_steps: int = 300,
    error_rate: float = 0.01,
    variant_error_rate: float | None = None,
) -> RunResult:
    """Simulate one rollout: hourly batches of feedback until a decision.

    Every call gets feedback; users split by the stage's share.

    Args:
        seed: the random seed (runs are deterministic).
        p_control: control's true success rate.
        p_variant: the variant's true success rate.
        policy: the rollout policy under test.
        events_per_step: feedback events per batch (both arms).
        step_s: seconds between batches.
        max_steps: batches before giving up (``undecided``).
        error_rate: control's (and by default the variant's) true error rate.
        variant_error_rate: the variant's true error rate, if different.

    Returns:
        How the run ended.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    now = 0.0
    state = engine.start("sim", "base", now, policy)
    state = engine.on_training_finished(state, True, "ft", now, policy).state
    c = [0, 0, 0, 0]  # calls, errors, feedback, successes
    v = [0, 0, 0, 0]
    for _ in range(max_steps):
        now += step_s
        pct = engine.variant_pct(state)
        nv = int(rng.binomial(events_per_step, pct))
        nc = events_per_step - nv
        v_err = error_rate if variant_error_rate is None else variant_error_rate
        for arm, n, p, e in ((v, nv, p_variant, v_err), (c, nc, p_control, error_rate)):
            arm[0] += n
            arm[1] += int(rng.binomial(n, e))
            arm[2] += n
            arm[3] += int(rng.binomial(n, p))
        ev = Evidence(
            control=ArmStats(calls=c[0], errors=c[1], feedback=c[2], successes=c[3]),
            variant=ArmStats(calls=v[0], errors=v[1], feedback=v[2], successes=v[3]),
        )
        d = engine.evaluate(state, policy, ev, now)
        state = d.state
        if state.status in (Status.PROMOTED, Status.ROLLED_BACK, Status.PAUSED):
            return RunResult(d.action, v[2], c[2], d.previous.stage_index)
    return RunResult("undecided", v[2], c[2], state.stage_index)


def simulate(
    p_control: float,
    p_variant: float,
    policy: Policy | None = None,
    runs: int = 200,
    seed: int = 0,
    **kwargs: Any,
) -> ScenarioResult:
    """Simulate many runs of one scenario.

    Args:
        p_control: control's true success rate.
        p_variant: the variant's true success rate.
        policy: the policy (default: :class:`Policy` defaults).
        runs: number of runs.
        seed: base seed; run ``i`` uses ``seed * 100003 + i``.
        **kwargs: passed to :func:`simulate_run`.

    Returns:
        The aggregate.
    """
    pol = policy or Policy()
    out = ScenarioResult()
    for i in range(runs):
        out.runs.append(simulate_run(seed * 100003 + i, p_control, p_variant, pol, **kwargs))
    return out
