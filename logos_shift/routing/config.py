"""The A/B routing config schema, defined once for the client and the server.

The server stores and serves exactly what
:func:`~logos_shift.routing.validate_config` accepts, and the client refuses
anything else, so a config that one side accepts the other side accepts too.

Optional fields accept ``null`` as "absent".  ``to_json`` writes the normalised
form (defaults filled in); ``validate_config(cfg.to_json()) == cfg`` holds.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "AssignmentConfig",
    "BreakerConfig",
    "ControlConfig",
    "MatchConfig",
    "RolloutConfig",
    "RouteConfig",
    "RouterConfig",
    "VariantConfig",
]


@dataclass(frozen=True)
class MatchConfig:
    """Which calls a route applies to: by dataset, by requested model, or both."""

    dataset: str | None = None
    model: str | None = None

    def to_json(self) -> dict[str, Any]:
        """Return the JSON form (absent fields omitted)."""
        out: dict[str, Any] = {}
        if self.dataset is not None:
            out["dataset"] = self.dataset
        if self.model is not None:
            out["model"] = self.model
        return out


@dataclass(frozen=True)
class ControlConfig:
    """The arm users get when not in a variant (and the fallback target).

    ``model`` may be absent only when every variant names a ``callable``; the
    control arm then keeps the model or function the caller asked for.
    """

    name: str = "control"
    model: str | None = None

    def to_json(self) -> dict[str, Any]:
        """Return the JSON form (absent fields omitted)."""
        out: dict[str, Any] = {"name": self.name}
        if self.model is not None:
            out["model"] = self.model
        return out


@dataclass(frozen=True)
class VariantConfig:
    """One treatment arm: a model (possibly on another endpoint) or a callable."""

    name: str
    model: str | None = None
    fallback: bool = True
    weight: float = 1.0
    param_overrides: dict[str, Any] = field(default_factory=dict)
    base_url: str | None = None
    api_key_env: str | None = None
    callable: str | None = None

    def to_json(self) -> dict[str, Any]:
        """Return the JSON form (absent fields omitted)."""
        out: dict[str, Any] = {"name": self.name}
        if self.model is not None:
            out["model"] = self.model
        out["fallback"] = self.fallback
        out["weight"] = self.weight
        if self.param_overrides:
            out["param_overrides"] = copy.deepcopy(self.param_overrides)
        for key in ("base_url", "api_key_env", "callable"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out


@dataclass(frozen=True)
class AssignmentConfig:
    """How a call is bucketed: the unit (a metadata key) and the hash seed."""

    unit: str = "user_id"
    seed: str = ""
    bucket_version: int = 1
    missing_unit: str = "random"
    hash: str = "sha256"

    def to_json(self) -> dict[str, Any]:
        """Return the JSON form."""
        return {
            "unit": self.unit,
            "seed": self.seed,
            "bucket_version": self.bucket_version,
            "missing_unit": self.missing_unit,
            "hash": self.hash,
        }


@dataclass(frozen=True)
class RolloutConfig:
    """Traffic shares; ``state``/``stage``/``stages``/``shadow_pct`` are server-side."""

    variant_pct: float = 0.0
    holdout_pct: float = 0.0
    state: str | None = None
    stage: int | None = None
    stages: tuple[float, ...] | None = None
    shadow_pct: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """Return the JSON form (absent fields omitted)."""
        out: dict[str, Any] = {"variant_pct": self.variant_pct, "holdout_pct": self.holdout_pct}
        if self.state is not None:
            out["state"] = self.state
        if self.stage is not None:
            out["stage"] = self.stage
        if self.stages is not None:
            out["stages"] = list(self.stages)
        if self.shadow_pct:
            out["shadow_pct"] = self.shadow_pct
        return out


@dataclass(frozen=True)
class BreakerConfig:
    """Client circuit breaker per variant (``consecutive_errors: 0`` disables that trigger)."""

    consecutive_errors: int = 5
    error_rate: float | None = None
    window_s: float = 60.0
    min_calls: int = 20
    cooldown_s: float = 300.0

    def to_json(self) -> dict[str, Any]:
        """Return the JSON form (absent fields omitted)."""
        out: dict[str, Any] = {"consecutive_errors": self.consecutive_errors}
        if self.error_rate is not None:
            out["error_rate"] = self.error_rate
        out["window_s"] = self.window_s
        out["min_calls"] = self.min_calls
        out["cooldown_s"] = self.cooldown_s
        return out


@dataclass(frozen=True)
class RouteConfig:
    """One validated route (``name`` is its key in ``routes``)."""

    name: str
    match: MatchConfig
    control: ControlConfig
    variants: tuple[VariantConfig, ...]
    assignment: AssignmentConfig
    rollout: RolloutConfig
    breaker: BreakerConfig
    kill_switch: bool = False
    policy: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        """Return the JSON form of the route (without its name)."""
        out: dict[str, Any] = {
            "match": self.match.to_json(),
            "control": self.control.to_json(),
            "variants": [v.to_json() for v in self.variants],
            "assignment": self.assignment.to_json(),
            "rollout": self.rollout.to_json(),
            "breaker": self.breaker.to_json(),
            "kill_switch": self.kill_switch,
        }
        if self.policy is not None:
            out["policy"] = copy.deepcopy(self.policy)
        return out


@dataclass(frozen=True)
class RouterConfig:
    """A whole validated config: a version and the routes by name."""

    version: int = 0
    routes: dict[str, RouteConfig] = field(default_factory=dict)
    ttl_s: float | None = None

    def to_json(self) -> dict[str, Any]:
        """Return the JSON form; ``validate_config`` of it gives an equal config."""
        out: dict[str, Any] = {
            "version": self.version,
            "routes": {name: r.to_json() for name, r in self.routes.items()},
        }
        if self.ttl_s is not None:
            out["ttl_s"] = self.ttl_s
        return out
