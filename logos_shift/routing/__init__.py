"""A/B routing: the config schema (shared with the server) and its validation.

The schema types and :func:`validate_config` are public: the server stores
and serves exactly what :func:`validate_config` accepts, so a config one side
accepts the other accepts too.  The mechanics (the router on the call path,
bucketing, circuit breakers, fallback classification and config sources) are
private modules of this package.

Example:
    >>> from logos_shift.routing import validate_config
    >>> cfg = validate_config({"version": 1, "routes": {"s": {
    ...     "match": {"dataset": "s"}, "control": {"name": "base", "model": "a"},
    ...     "variants": [{"name": "ft", "model": "b"}],
    ...     "rollout": {"variant_pct": 0.1}}}})
    >>> cfg.routes["s"].variants[0].model
    'b'
"""

from __future__ import annotations

from logos_shift.errors import ConfigError

from .config import (
    AssignmentConfig,
    BreakerConfig,
    ControlConfig,
    MatchConfig,
    RolloutConfig,
    RouteConfig,
    RouterConfig,
    VariantConfig,
)
from .validate import validate_config, validate_route

__all__ = [
    "AssignmentConfig",
    "BreakerConfig",
    "ConfigError",
    "ControlConfig",
    "MatchConfig",
    "RolloutConfig",
    "RouteConfig",
    "RouterConfig",
    "VariantConfig",
    "validate_config",
    "validate_route",
]
