"""The A/B routing config schema, defined once for the client and the server.

The server stores and serves exactly what :func:`validate_config` accepts, and
the client refuses anything else, so a config that one side accepts the other
side accepts too.  Validation collects every problem it finds and reports each
with its JSON path (``routes.support.variants[0].model: required``), so a bad
config is fixed in one round trip.

Optional fields accept ``null`` as "absent".  ``to_json`` writes the normalised
form (defaults filled in); ``validate_config(cfg.to_json()) == cfg`` holds.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

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

#: Route names end up in URLs (``PUT /v1/routes/{route}``) and file names.
_ROUTE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@+-]{0,127}$")
_MAX_NAME = 200


class ConfigError(ValueError):
    """A routing config failed validation.

    Attributes:
        errors: one message per problem, each ``<json path>: <what is wrong>``.
    """

    def __init__(self, errors: list[str]) -> None:
        self.errors = list(errors)
        shown = "; ".join(self.errors[:10])
        more = f" (and {len(self.errors) - 10} more)" if len(self.errors) > 10 else ""
        super().__init__(f"invalid routing config: {shown}{more}")


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


def validate_config(obj: object) -> RouterConfig:
    """Validate a decoded JSON config and return its frozen form.

    Args:
        obj: the decoded JSON document (``json.loads`` of the body or file).

    Returns:
        The validated :class:`RouterConfig`.

    Raises:
        ConfigError: with every problem found, each prefixed by its JSON path.

    Example:
        >>> cfg = validate_config({"version": 1, "routes": {"s": {
        ...     "match": {"dataset": "s"}, "control": {"name": "base", "model": "a"},
        ...     "variants": [{"name": "ft", "model": "b"}],
        ...     "rollout": {"variant_pct": 0.1}}}})
        >>> cfg.routes["s"].variants[0].model
        'b'
    """
    v = _Validator()
    obj_map = v.obj(obj, "config")
    if obj_map is None:
        raise ConfigError(v.errors)
    v.keys(obj_map, "config", {"version", "routes", "ttl_s"}, root=True)
    version = v.int_(obj_map, "version", "", default=0, minimum=0)
    ttl = v.num(obj_map, "ttl_s", "", default=None, positive=True)
    routes: dict[str, RouteConfig] = {}
    raw_routes = obj_map.get("routes", {})
    routes_map = v.obj(raw_routes, "routes")
    if routes_map is not None:
        for name, raw in routes_map.items():
            route = v.route(name, raw)
            if route is not None:
                routes[name] = route
    seen: dict[tuple[str | None, str | None], str] = {}
    for name, route in routes.items():
        key = (route.match.dataset, route.match.model)
        if key in seen:
            v.err(f"routes.{name}.match", f"same match as routes.{seen[key]}")
        else:
            seen[key] = name
    if v.errors:
        raise ConfigError(v.errors)
    return RouterConfig(version=version or 0, routes=routes, ttl_s=ttl)


def validate_route(name: str, obj: object) -> RouteConfig:
    """Validate one route (the body of the server's ``PUT /v1/routes/{route}``).

    Args:
        name: the route's name (its key in ``routes``).
        obj: the decoded JSON route object.

    Returns:
        The validated :class:`RouteConfig`.

    Raises:
        ConfigError: with every problem found, paths prefixed ``routes.<name>``.
    """
    v = _Validator()
    route = v.route(name, obj)
    if v.errors or route is None:
        raise ConfigError(v.errors)
    return route


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    return type(value).__name__


class _Validator:
    """Collects errors while building the frozen config."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def err(self, path: str, message: str) -> None:
        self.errors.append(f"{path}: {message}")

    def obj(self, value: object, path: str) -> Mapping[str, Any] | None:
        if not isinstance(value, Mapping):
            self.err(path, f"expected object, got {_type_name(value)}")
            return None
        for key in value:
            if not isinstance(key, str):
                self.err(path, f"keys must be strings, got {_type_name(key)}")
                return None
        return value

    def keys(self, m: Mapping[str, Any], path: str, allowed: set[str], root: bool = False) -> None:
        for key in m:
            if key not in allowed:
                self.err(key if root else f"{path}.{key}", "unknown key")

    @staticmethod
    def _p(path: str, key: str) -> str:
        return f"{path}.{key}" if path else key

    def str_(
        self, m: Mapping[str, Any], key: str, path: str, *, required: bool = False,
        default: str | None = None, max_len: int = _MAX_NAME,
    ) -> str | None:  # fmt: skip
        value = m.get(key)
        if value is None:
            if required:
                self.err(self._p(path, key), "required")
            return default
        if not isinstance(value, str):
            self.err(self._p(path, key), f"expected string, got {_type_name(value)}")
            return default
        if not value.strip():
            self.err(self._p(path, key), "must not be empty")
            return default
        if len(value) > max_len:
            self.err(self._p(path, key), f"longer than {max_len} characters")
            return default
        return value

    def bool_(self, m: Mapping[str, Any], key: str, path: str, default: bool) -> bool:
        value = m.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.err(self._p(path, key), f"expected boolean, got {_type_name(value)}")
            return default
        return value

    def int_(
        self, m: Mapping[str, Any], key: str, path: str, *, default: int | None,
        minimum: int | None = None,
    ) -> int | None:  # fmt: skip
        value = m.get(key)
        if value is None:
            return default
        if not isinstance(value, int) or isinstance(value, bool):
            self.err(self._p(path, key), f"expected integer, got {_type_name(value)}")
            return default
        if minimum is not None and value < minimum:
            self.err(self._p(path, key), f"must be >= {minimum}, got {value}")
            return default
        return value

    def num(
        self, m: Mapping[str, Any], key: str, path: str, *, default: float | None,
        positive: bool = False, unit_interval: bool = False,
    ) -> float | None:  # fmt: skip
        value = m.get(key)
        if value is None:
            return default
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            self.err(self._p(path, key), f"expected number, got {_type_name(value)}")
            return default
        f = float(value)
        if not math.isfinite(f):
            self.err(self._p(path, key), f"must be a finite number, got {value}")
            return default
        if unit_interval and not 0.0 <= f <= 1.0:
            self.err(self._p(path, key), f"must be between 0 and 1, got {value}")
            return default
        if positive and f <= 0.0:
            self.err(self._p(path, key), f"must be > 0, got {value}")
            return default
        return f

    def sub(self, m: Mapping[str, Any], key: str, path: str) -> Mapping[str, Any]:
        """An optional nested object (absent or null → empty)."""
        value = m.get(key)
        if value is None:
            return {}
        return self.obj(value, self._p(path, key)) or {}

    def route(self, name: object, raw: object) -> RouteConfig | None:
        if not isinstance(name, str) or not _ROUTE_NAME.match(name):
            self.err(
                f"routes.{name}",
                "route name must be 1-128 characters of letters, digits and _.:@+- "
                "starting with a letter or digit",
            )
            return None
        path = f"routes.{name}"
        m = self.obj(raw, path)
        if m is None:
            return None
        self.keys(m, path, {
            "match", "control", "variants", "assignment", "rollout", "breaker",
            "kill_switch", "policy",
        })  # fmt: skip
        match = self.match(m, path)
        variants = self.variants(m, path)
        control = self.control(m, path, variants)
        names = {v.name for v in variants}
        if control.name in names:
            self.err(f"{path}.control.name", f"same name as a variant: {control.name!r}")
        return RouteConfig(
            name=name,
            match=match,
            control=control,
            variants=variants,
            assignment=self.assignment(m, path, name),
            rollout=self.rollout(m, path),
            breaker=self.breaker(m, path),
            kill_switch=self.bool_(m, "kill_switch", path, False),
            policy=self.policy(m, path),
        )

    def match(self, m: Mapping[str, Any], path: str) -> MatchConfig:
        if m.get("match") is None:
            self.err(f"{path}.match", "required")
            return MatchConfig()
        sub = self.sub(m, "match", path)
        p = f"{path}.match"
        self.keys(sub, p, {"dataset", "model"})
        dataset = self.str_(sub, "dataset", p)
        model = self.str_(sub, "model", p)
        if sub.get("dataset") is None and sub.get("model") is None:
            self.err(p, "needs dataset or model")
        return MatchConfig(dataset=dataset, model=model)

    def control(
        self, m: Mapping[str, Any], path: str, variants: tuple[VariantConfig, ...]
    ) -> ControlConfig:
        p = f"{path}.control"
        if m.get("control") is None:
            self.err(p, "required")
            return ControlConfig()
        sub = self.sub(m, "control", path)
        self.keys(sub, p, {"name", "model"})
        name = self.str_(sub, "name", p, default="control") or "control"
        needs_model = any(v.callable is None for v in variants) or not variants
        model = self.str_(sub, "model", p, required=needs_model)
        return ControlConfig(name=name, model=model)

    def variants(self, m: Mapping[str, Any], path: str) -> tuple[VariantConfig, ...]:
        p = f"{path}.variants"
        raw = m.get("variants")
        if raw is None:
            self.err(p, "required")
            return ()
        if not isinstance(raw, list):
            self.err(p, f"expected array, got {_type_name(raw)}")
            return ()
        if not raw:
            self.err(p, "must have at least one variant")
            return ()
        out: list[VariantConfig] = []
        seen: set[str] = set()
        allowed = {
            "name", "model", "fallback", "weight", "param_overrides", "base_url",
            "api_key_env", "callable",
        }  # fmt: skip
        for i, item in enumerate(raw):
            vp = f"{p}[{i}]"
            sub = self.obj(item, vp)
            if sub is None:
                continue
            self.keys(sub, vp, allowed)
            name = self.str_(sub, "name", vp, required=True)
            if name is not None:
                if name in seen:
                    self.err(f"{vp}.name", f"duplicate variant name {name!r}")
                seen.add(name)
            call = self.str_(sub, "callable", vp)
            model = self.str_(sub, "model", vp, required=call is None and "callable" not in sub)
            overrides = self.sub(sub, "param_overrides", vp)
            if "model" in overrides:
                self.err(f"{vp}.param_overrides.model", "use the variant's model field")
            weight = self.num(sub, "weight", vp, default=1.0, positive=True)
            out.append(
                VariantConfig(
                    name=name or f"#{i}",
                    model=model,
                    fallback=self.bool_(sub, "fallback", vp, True),
                    weight=weight if weight is not None else 1.0,
                    param_overrides=copy.deepcopy(dict(overrides)),
                    base_url=self.url(sub, "base_url", vp),
                    api_key_env=self.str_(sub, "api_key_env", vp),
                    callable=call,
                )
            )
        return tuple(out)

    def url(self, m: Mapping[str, Any], key: str, path: str) -> str | None:
        value = self.str_(m, key, path, max_len=2000)
        if value is not None and not value.startswith(("http://", "https://")):
            self.err(self._p(path, key), f"must be an http(s) URL, got {value!r}")
            return None
        return value

    def assignment(self, m: Mapping[str, Any], path: str, route: str) -> AssignmentConfig:
        p = f"{path}.assignment"
        sub = self.sub(m, "assignment", path)
        self.keys(sub, p, {"unit", "seed", "bucket_version", "missing_unit", "hash"})
        missing = self.str_(sub, "missing_unit", p, default="random") or "random"
        if missing != "random":
            self.err(f"{p}.missing_unit", f"must be 'random', got {missing!r}")
        hash_ = self.str_(sub, "hash", p, default="sha256") or "sha256"
        if hash_ != "sha256":
            self.err(f"{p}.hash", f"must be 'sha256', got {hash_!r}")
        version = self.int_(sub, "bucket_version", p, default=1, minimum=0)
        return AssignmentConfig(
            unit=self.str_(sub, "unit", p, default="user_id") or "user_id",
            seed=self.str_(sub, "seed", p, default=route, max_len=1000) or route,
            bucket_version=1 if version is None else version,
            missing_unit="random",
            hash="sha256",
        )

    def rollout(self, m: Mapping[str, Any], path: str) -> RolloutConfig:
        p = f"{path}.rollout"
        sub = self.sub(m, "rollout", path)
        self.keys(sub, p, {"variant_pct", "holdout_pct", "state", "stage", "stages", "shadow_pct"})
        vpct = self.num(sub, "variant_pct", p, default=0.0, unit_interval=True) or 0.0
        hpct = self.num(sub, "holdout_pct", p, default=0.0, unit_interval=True) or 0.0
        if vpct + hpct > 1.0 + 1e-12:
            self.err(p, f"variant_pct + holdout_pct must be <= 1, got {vpct + hpct:g}")
        stages: tuple[float, ...] | None = None
        raw_stages = sub.get("stages")
        if raw_stages is not None:
            if not isinstance(raw_stages, list):
                self.err(f"{p}.stages", f"expected array, got {_type_name(raw_stages)}")
            else:
                vals: list[float] = []
                for i, s in enumerate(raw_stages):
                    ok = isinstance(s, (int, float)) and not isinstance(s, bool)
                    if not ok or not 0.0 <= float(s) <= 1.0:
                        self.err(f"{p}.stages[{i}]", "must be a number between 0 and 1")
                    else:
                        vals.append(float(s))
                if len(vals) == len(raw_stages):
                    stages = tuple(vals)
        stage = self.int_(sub, "stage", p, default=None, minimum=0)
        if stage is not None and stages is not None and stage >= len(stages):
            self.err(f"{p}.stage", f"must be < len(stages) = {len(stages)}, got {stage}")
        return RolloutConfig(
            variant_pct=vpct,
            holdout_pct=hpct,
            state=self.str_(sub, "state", p),
            stage=stage,
            stages=stages,
            shadow_pct=self.num(sub, "shadow_pct", p, default=0.0, unit_interval=True) or 0.0,
        )

    def breaker(self, m: Mapping[str, Any], path: str) -> BreakerConfig:
        p = f"{path}.breaker"
        sub = self.sub(m, "breaker", path)
        self.keys(sub, p, {
            "consecutive_errors", "error_rate", "max_error_rate", "window_s", "min_calls",
            "cooldown_s",
        })  # fmt: skip
        if sub.get("error_rate") is not None and sub.get("max_error_rate") is not None:
            self.err(f"{p}.max_error_rate", "give error_rate or max_error_rate, not both")
        rate_key = "error_rate" if sub.get("error_rate") is not None else "max_error_rate"
        rate = self.num(sub, rate_key, p, default=None, unit_interval=True)
        if rate == 0.0:
            self.err(f"{p}.{rate_key}", "must be > 0, got 0")
            rate = None
        d = BreakerConfig()
        return BreakerConfig(
            consecutive_errors=_or(
                self.int_(sub, "consecutive_errors", p, default=None, minimum=0),
                d.consecutive_errors,
            ),
            error_rate=rate,
            window_s=_or(self.num(sub, "window_s", p, default=None, positive=True), d.window_s),
            min_calls=_or(self.int_(sub, "min_calls", p, default=None, minimum=1), d.min_calls),
            cooldown_s=_or(
                self.num(sub, "cooldown_s", p, default=None, positive=True), d.cooldown_s
            ),
        )

    def policy(self, m: Mapping[str, Any], path: str) -> dict[str, Any] | None:
        raw = m.get("policy")
        if raw is None:
            return None
        sub = self.obj(raw, f"{path}.policy")
        return None if sub is None else copy.deepcopy(dict(sub))


def _or(value: Any, default: Any) -> Any:
    return default if value is None else value
