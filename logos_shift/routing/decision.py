"""The router's decision type and the per-route tables built at config load.

Everything ``Router.decide`` returns is built here once per config, so the
call path only picks a prebuilt, immutable :class:`Decision`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from .bucketing import thresholds
from .config import BreakerConfig, RouteConfig, RouterConfig

_EMPTY: Mapping[str, Any] = MappingProxyType({})
logger = logging.getLogger("logos_shift")


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


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Another endpoint a variant is served from.

    Attributes:
        base_url: the SDK's base URL for that endpoint.
        api_key: its key (read from the variant's ``api_key_env``), or ``None``
            to keep the caller's key (no ``api_key_env`` named).
    """

    base_url: str
    api_key: str | None


@dataclass(frozen=True, slots=True)
class Applied:
    """A request with a routing decision applied.

    Attributes:
        kwargs: the request's keyword arguments to send (a new dict).
        endpoint: the endpoint to send them to; ``None`` keeps the caller's client.
    """

    kwargs: dict[str, Any]
    endpoint: Endpoint | None = None


_warned_keys: set[str] = set()


def apply(decision: Decision, request: Mapping[str, Any]) -> Applied | None:
    """Apply a decision to an SDK request: the one place routing changes a request.

    Sets the decision's ``model``, then its ``param_overrides``; a variant with
    a ``base_url`` is sent to that endpoint (with the key from its
    ``api_key_env``) through a client derived from the caller's, which the
    capture core builds and caches per endpoint: the caller's own client is
    never changed.  Falling back to control re-sends the *original* request
    on the caller's client.

    Args:
        decision: what the router chose.
        request: the caller's keyword arguments (not modified).

    Returns:
        The request to send, or ``None`` when the decision cannot be applied:
        its ``api_key_env`` is not set in the environment (logged once per
        name); the call then keeps its own model and endpoint, because the
        caller's key must not be sent to another endpoint.

    Example:
        >>> d = Decision(route="r", variant="ft", arm="variant", model="ft-1",
        ...              control_model="base", param_overrides={"temperature": 0})
        >>> apply(d, {"model": "base", "messages": []}).kwargs
        {'model': 'ft-1', 'messages': [], 'temperature': 0}
    """
    endpoint = None
    if decision.base_url is not None and decision.is_variant:
        key = None
        if decision.api_key_env is not None:
            key = os.environ.get(decision.api_key_env)
            if not key:
                if decision.api_key_env not in _warned_keys:
                    _warned_keys.add(decision.api_key_env)
                    logger.warning(
                        "logos_shift: route %r variant %r names api_key_env=%s, which is not "
                        "set: its calls keep the caller's model and endpoint",
                        decision.route, decision.variant, decision.api_key_env,
                    )  # fmt: skip
                return None
        endpoint = Endpoint(decision.base_url, key)
    send = dict(request)
    if decision.model:
        send["model"] = decision.model
    if decision.param_overrides:
        send.update(decision.param_overrides)
    return Applied(send, endpoint)


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
