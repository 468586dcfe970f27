"""Plain values of the rollout engine: policy, evidence, state (JSON round-trippable)."""

from __future__ import annotations

import enum
import itertools
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from logos_shift.server.stats.sketch import LatencySketch

__all__ = [
    "ArmStats",
    "Baseline",
    "Evidence",
    "FinetuneRequest",
    "Policy",
    "RolloutSettings",
    "RolloutState",
    "Status",
    "TransitionError",
]

DEFAULT_STAGES = (0.01, 0.05, 0.10, 0.25, 0.50, 1.0)


class TransitionError(ValueError):
    """An action or event does not apply to the rollout's current state."""


class Status(str, enum.Enum):
    """Where a route's rollout is."""

    TRAINING = "training"
    EVALUATING = "evaluating"
    CANARY = "canary"
    PAUSED = "paused"
    PROMOTED = "promoted"
    ROLLED_BACK = "rolled_back"
    FAILED = "failed"


@dataclass(frozen=True)
class Policy:
    """The user's rollout knobs (the ``policy`` block of a route).

    Attributes:
        stages: variant shares, increasing, ending at 1.0 (= promoted).
        margin: how much worse than control feedback success may be and still
            count as "as good" (absolute, 0.05 = 5 points).
        alpha: error rate of the sequential tests.
        seq_tuning_n: ``N*`` of the confidence sequence (tightest near here).
        min_per_arm: feedback samples each arm needs in a stage before it advances.
        min_stage_s: minimum time spent in a stage.
        min_harm_n: samples an arm needs before a guardrail may fire.
        error_rate_max_delta: tolerated rise of the error rate (fallbacks count).
        p95_latency_ratio_max: tolerated p95 latency, as a multiple of control's.
        cost_ratio_max: tolerated cost per call, as a multiple of control's.
        srm_p_min: a sample-ratio-mismatch p-value below this pauses the rollout.
        srm_grace_s: calls made in this many seconds after a stage began are left
            out of the sample-ratio check (clients still on the previous share until
            their next config refresh, calls in flight); keep it above the clients'
            ``refresh_seconds`` plus their flush interval.
        holdout_pct: share of units kept on control even after promotion.
        offline_eval: run the offline evaluation on the test split first.
        offline_eval_gate: share of test examples the judge must accept.
    """

    stages: tuple[float, ...] = DEFAULT_STAGES
    margin: float = 0.05
    alpha: float = 0.05
    seq_tuning_n: float = 1000.0
    min_per_arm: int = 100
    min_stage_s: float = 3600.0
    min_harm_n: int = 30
    error_rate_max_delta: float = 0.02
    p95_latency_ratio_max: float = 1.5
    cost_ratio_max: float = 1.25
    srm_p_min: float = 0.001
    srm_grace_s: float = 180.0
    holdout_pct: float = 0.0
    offline_eval: bool = False
    offline_eval_gate: float = 0.8

    def __post_init__(self) -> None:
        st = tuple(float(x) for x in self.stages)
        object.__setattr__(self, "stages", st)
        problems = []
        if len(st) < 2 or st[-1] != 1.0 or any(not 0 < x <= 1 for x in st):
            problems.append("stages must be at least two shares in (0, 1] ending at 1.0")
        if any(b <= a for a, b in itertools.pairwise(st)):
            problems.append("stages must increase")
        if not 0 < self.margin < 1:
            problems.append("margin must be in (0, 1)")
        if not 0 < self.alpha < 0.5:
            problems.append("alpha must be in (0, 0.5)")
        if self.seq_tuning_n <= 0 or self.min_per_arm < 1 or self.min_harm_n < 1:
            problems.append("seq_tuning_n, min_per_arm and min_harm_n must be positive")
        if self.min_stage_s < 0 or not 0 <= self.holdout_pct < 1:
            problems.append("min_stage_s must be >= 0 and holdout_pct in [0, 1)")
        if self.srm_grace_s < 0:
            problems.append("srm_grace_s must be >= 0")
        if problems:
            raise ValueError("invalid rollout policy: " + "; ".join(problems))

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> Policy:
        """Build a policy from a JSON object, defaults for absent keys.

        Args:
            data: the ``policy`` object (``None`` = all defaults).

        Returns:
            The policy.

        Raises:
            ValueError: unknown keys or invalid values.
        """
        data = dict(data or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"invalid rollout policy: unknown keys {unknown}")
        numbers = {f.name for f in fields(cls)} - {"stages", "offline_eval"}
        for key in sorted(numbers & set(data)):
            value = data[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"invalid rollout policy: {key} must be a number")
        if "offline_eval" in data and not isinstance(data["offline_eval"], bool):
            raise ValueError("invalid rollout policy: offline_eval must be true or false")
        if "stages" in data:
            st = data["stages"]
            if not isinstance(st, (list, tuple)) or not all(
                isinstance(x, (int, float)) and not isinstance(x, bool) for x in st
            ):
                raise ValueError("invalid rollout policy: stages must be a list of numbers")
            data["stages"] = tuple(st)
        return cls(**data)

    def to_json(self) -> dict[str, Any]:
        """Return the JSON form."""
        out = asdict(self)
        out["stages"] = list(self.stages)
        return out


@dataclass(frozen=True)
class ArmStats:
    """Cumulative statistics of one arm since the canary began.

    Attributes:
        calls: calls served by this arm.
        errors: failed calls; for the variant, fallbacks to control included.
        feedback: calls with a success/failure verdict attributed to the arm.
        successes: how many of those were successes (a float to allow weights).
        cost_n: calls with a known cost.
        cost_sum: their total cost.
        cost_sumsq: the sum of squared costs.
        latency: the latencies of its successful calls (a log-bucket sketch).
    """

    calls: int = 0
    errors: int = 0
    feedback: int = 0
    successes: float = 0.0
    cost_n: int = 0
    cost_sum: float = 0.0
    cost_sumsq: float = 0.0
    latency: LatencySketch = field(default_factory=LatencySketch)


@dataclass(frozen=True)
class Baseline:
    """Counts at the start of the current stage (per-stage gates subtract them)."""

    variant_feedback: int = 0
    control_feedback: int = 0
    variant_calls: int = 0
    control_calls: int = 0


@dataclass(frozen=True)
class Evidence:
    """Everything the engine knows about both arms.

    Attributes:
        control: control's cumulative statistics.
        variant: the variant's cumulative statistics.
        stage_calls: ``(variant, control)`` calls made since the current stage
            began plus the policy's ``srm_grace_s``, for the sample-ratio check;
            None: the stage's calls counted from its baseline instead.
        stage_units: ``(variant, control)`` independently assigned draws in the
            same window: distinct assignment units (the route's ``assignment.unit``
            metadata value) plus the calls that carry no unit (those are assigned
            at random per call).  When given, the sample-ratio check uses it
            instead of ``stage_calls``: units, not calls, are what the router
            assigns, and a few heavy users make call counts vary far more than
            the binomial test assumes.
    """

    control: ArmStats = field(default_factory=ArmStats)
    variant: ArmStats = field(default_factory=ArmStats)
    stage_calls: tuple[int, int] | None = None
    stage_units: tuple[int, int] | None = None

    def baseline(self) -> Baseline:
        """Return the counts a new stage starts from."""
        return Baseline(
            self.variant.feedback, self.control.feedback, self.variant.calls, self.control.calls
        )


@dataclass(frozen=True)
class RolloutState:
    """The persisted state of one route's rollout.

    Attributes:
        route: the route name.
        status: where the rollout is.
        stages: the variant shares (copied from the policy at start).
        stage_index: index into ``stages`` (meaningful in canary/paused/promoted).
        control_model: the model the route served before.
        variant_model: the fine-tuned model (once trained).
        job_id: the fine-tuning job.
        since: when the current status/stage began (Unix seconds).
        paused_from: the status a paused rollout resumes into.
        reason: why the last transition happened.
        version: incremented on every transition.
        base: counts at the start of the current stage.
    """

    route: str
    status: Status
    stages: tuple[float, ...] = DEFAULT_STAGES
    stage_index: int = 0
    control_model: str | None = None
    variant_model: str | None = None
    job_id: str | None = None
    since: float = 0.0
    paused_from: Status | None = None
    reason: str = ""
    version: int = 0
    base: Baseline = field(default_factory=Baseline)

    def to_json(self) -> dict[str, Any]:
        """Return the JSON form (round-trips through :meth:`from_json`)."""
        out = asdict(self)
        out["status"] = self.status.value
        out["stages"] = list(self.stages)
        out["paused_from"] = self.paused_from.value if self.paused_from else None
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RolloutState:
        """Rebuild a state from :meth:`to_json` output.

        Args:
            data: the JSON object.

        Returns:
            The state.
        """
        d = dict(data)
        d["status"] = Status(d["status"])
        d["stages"] = tuple(d.get("stages", DEFAULT_STAGES))
        d["paused_from"] = Status(d["paused_from"]) if d.get("paused_from") else None
        d["base"] = Baseline(**d.get("base", {}))
        return cls(**d)


@dataclass(frozen=True)
class RolloutSettings:
    """How the server runs fine-tunes and rollouts (``create_app(rollout=...)``).

    Attributes:
        interval_s: seconds between the rollout loop's ticks (time-based gates such
            as ``min_stage_s``, job polls, stale stages).
        debounce_s: delay that batches the evaluations new records trigger.
        lease_s: how long the loop's leader lease lasts without a heartbeat (another
            server takes over within two lease periods of the leader's death).
        job_timeout_s: give up on a fine-tuning job after this long.
        poll_s: ``(initial, max)`` seconds between polls of a running job.
        webhook_retries: extra attempts after a failed webhook delivery.
        webhook_backoff_s: first delay between webhook attempts (doubles).
    """

    interval_s: float = 5.0
    debounce_s: float = 1.0
    lease_s: float = 10.0
    job_timeout_s: float = 24 * 3600.0
    poll_s: tuple[float, float] = (0.5, 30.0)
    webhook_retries: int = 3
    webhook_backoff_s: float = 0.5

    def __post_init__(self) -> None:
        if min(self.interval_s, self.lease_s, self.job_timeout_s) <= 0 or self.debounce_s < 0:
            raise ValueError(
                "RolloutSettings: interval_s, lease_s and job_timeout_s must be > 0, "
                "debounce_s >= 0"
            )
        if not 0 < self.poll_s[0] <= self.poll_s[1] or self.webhook_retries < 0:
            raise ValueError(
                "RolloutSettings: poll_s must be (initial, max) with 0 < initial <= max, "
                "webhook_retries >= 0"
            )


@dataclass(frozen=True)
class FinetuneRequest:
    """What ``POST /v1/finetune`` asks for (see the endpoint for each field)."""

    dataset: str
    base_model: str
    route: str | None = None
    control_model: str | None = None
    backend: str | None = None
    backend_url: str | None = None
    backend_api_key: str | None = None
    min_score: float | None = None
    since: float | None = None
    until: float | None = None
    policy: dict[str, Any] = field(default_factory=dict)
    webhook_url: str | None = None
    seed: int | None = None
