"""The router's decision type and the per-route tables built at config load.

Everything ``Router.decide`` returns is built here once per config, so the
call path only picks a prebuilt, immutable :class:`Decision`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from .bucketing import thresholds
from .config import BreakerConfig, RouteConfig, RouterConfig

_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Decision:
    """What the router chose for one call.

    Attributes:
        route: the matched route's name.
        variant: the arm's name: a variant's name, the control's name, or ``"holdout"``.
        arm: ``"variant"``, ``"control"`` or ``"holdout"``.
        model: the model to send; ``None`` means keep the requested one.
        control_model: the fallback target when a variant call fails
            (``None`` means the requested model / the original callable).
        fallback: retry once on ``control_model`` when this variant call fails.
        param_overrides: request parameters to override (variant only).
        base_url: serve from this OpenAI-compatible endpoint instead (variant only).
        api_key_env: environment variable holding that endpoint's key.
        callable: name of the alternative callable for decorated functions.
        reason: ``"bucket"`` (unit hashed), ``"random"`` (no unit), ``"kill_switch"``,
            ``"breaker_open"`` (sent to control by the breaker) or ``"probe"``
            (the breaker's half-open trial call).
        bucket_version: the route's ``bucket_version``.
        config_version: the config's ``version``.
    """

    route: str
    variant: str
    arm: str
    model: str | None
    control_model: str | None
    fallback: bool = False
    param_overrides: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    base_url: str | None = None
    api_key_env: str | None = None
    callable: str | None = None
    reason: str = "bucket"
    bucket_version: int = 1
    config_version: int = 0

    @property
    def is_variant(self) -> bool:
        """True when a variant (not control or holdout) serves the call."""
        return self.arm == "variant"


class Compiled:
    """A route turned into the few values and prebuilt decisions ``decide`` needs."""

    __slots__ = (
        "bounds",
        "breaker",
        "control",
        "holdout",
        "hpct",
        "keys",
        "kill",
        "name",
        "prefix",
        "unit",
        "variants",
        "vpct",
    )  # fmt: skip

    def __init__(self, route: RouteConfig, config_version: int) -> None:
        self.name = route.name
        a = route.assignment
        self.prefix = f"{a.seed}:{a.bucket_version}:"
        self.unit = a.unit
        self.vpct = route.rollout.variant_pct
        self.hpct = route.rollout.holdout_pct
        self.kill = route.kill_switch
        self.breaker: BreakerConfig = route.breaker
        self.bounds = thresholds([v.weight for v in route.variants])
        self.keys = [(route.name, v.name) for v in route.variants]
        base: dict[str, Any] = {
            "route": route.name,
            "control_model": route.control.model,
            "bucket_version": a.bucket_version,
            "config_version": config_version,
        }
        reasons = ("bucket", "random", "kill_switch", "breaker_open", "probe")
        self.control = {
            r: Decision(variant=route.control.name, arm="control", model=route.control.model,
                        reason=r, **base)
            for r in reasons
        }  # fmt: skip
        self.holdout = {
            r: Decision(variant="holdout", arm="holdout", model=route.control.model, reason=r,
                        **base)
            for r in reasons
        }  # fmt: skip
        self.variants = [
            {
                r: Decision(
                    variant=v.name, arm="variant", model=v.model, fallback=v.fallback,
                    param_overrides=MappingProxyType(dict(v.param_overrides)),
                    base_url=v.base_url, api_key_env=v.api_key_env, callable=v.callable,
                    reason=r, **base,
                )
                for r in reasons
            }
            for v in route.variants
        ]  # fmt: skip


def build_index(config: RouterConfig) -> dict[tuple[str | None, str | None], Compiled]:
    return {
        (r.match.dataset, r.match.model): Compiled(r, config.version)
        for r in config.routes.values()
    }


def targets(config: RouterConfig | None) -> set[tuple[str, str, object]]:
    """Each variant's identity: a new model under an old name gets a fresh breaker."""
    if config is None:
        return set()
    return {
        (r.name, v.name, (v.model, v.base_url, v.callable))
        for r in config.routes.values()
        for v in r.variants
    }
