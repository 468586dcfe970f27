"""Validation of routing configs: :func:`validate_config` and :func:`validate_route`.

Kept apart from the schema's dataclasses (:mod:`.config`) so each module stays
small.  The validator collects every error with its JSON path
(``routes.support.variants[0].model: required``) instead of stopping at the
first, so one round trip fixes a config.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Mapping
from typing import Any

from logos_shift.errors import ConfigError

from . import config as rc

__all__ = ["ConfigError", "Validator", "validate_config", "validate_route"]

#: Route names end up in URLs (``PUT /v1/routes/{route}``) and file names.
_ROUTE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@+-]{0,127}")
_MAX_NAME = 200


def _text_problem(value: str) -> str | None:
    """Why a string cannot be stored and served as JSON text (the records' rule), or None."""
    if "\x00" in value:
        return "must not contain NUL characters"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "must be valid UTF-8 text (no lone surrogates)"
    return None


_NOT_FOR_CALLABLE = "cannot apply to a callable variant (it serves a function, not an SDK request)"


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


class Validator:
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
            problem = _text_problem(key)
            if problem is not None:
                self.err(path, f"key {key!r}: {problem}")
                return None
        return value

    def free(self, value: object, path: str) -> None:
        """Check a free-form JSON value (overrides, policy): text, keys and numbers."""
        stack = [(value, path)]
        while stack:
            item, p = stack.pop()
            if isinstance(item, str):
                problem = _text_problem(item)
                if problem is not None:
                    self.err(p, problem)
            elif isinstance(item, float) and not math.isfinite(item):
                self.err(p, f"must be a finite number, got {item}")
            elif isinstance(item, Mapping):
                for k, v in item.items():
                    problem = _text_problem(k) if isinstance(k, str) else "keys must be strings"
                    if problem is not None:
                        self.err(p, f"key {k!r}: {problem}")
                    stack.append((v, self._p(p, str(k))))
            elif isinstance(item, list):
                stack.extend((v, f"{p}[{i}]") for i, v in enumerate(item))

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
        problem = _text_problem(value)
        if problem is not None:
            self.err(self._p(path, key), problem)
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
        try:
            f = float(value)
        except OverflowError:
            f = math.inf
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

    def route(self, name: object, raw: object) -> rc.RouteConfig | None:
        if not isinstance(name, str) or not _ROUTE_NAME.fullmatch(name):
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
        return rc.RouteConfig(
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

    def match(self, m: Mapping[str, Any], path: str) -> rc.MatchConfig:
        if m.get("match") is None:
            self.err(f"{path}.match", "required")
            return rc.MatchConfig()
        sub = self.sub(m, "match", path)
        p = f"{path}.match"
        self.keys(sub, p, {"dataset", "model"})
        dataset = self.str_(sub, "dataset", p)
        model = self.str_(sub, "model", p)
        if sub.get("dataset") is None and sub.get("model") is None:
            self.err(p, "needs dataset or model")
        return rc.MatchConfig(dataset=dataset, model=model)

    def control(
        self, m: Mapping[str, Any], path: str, variants: tuple[rc.VariantConfig, ...]
    ) -> rc.ControlConfig:
        p = f"{path}.control"
        if m.get("control") is None:
            self.err(p, "required")
            return rc.ControlConfig()
        sub = self.sub(m, "control", path)
        self.keys(sub, p, {"name", "model"})
        name = self.str_(sub, "name", p, default="control") or "control"
        needs_model = any(v.callable is None for v in variants) or not variants
        model = self.str_(sub, "model", p, required=needs_model)
        return rc.ControlConfig(name=name, model=model)

    def variants(self, m: Mapping[str, Any], path: str) -> tuple[rc.VariantConfig, ...]:
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
        out: list[rc.VariantConfig] = []
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
                elif name == "holdout":
                    self.err(f"{vp}.name", "'holdout' is reserved for the holdout arm")
                seen.add(name)
            call = self.str_(sub, "callable", vp)
            model = self.str_(sub, "model", vp, required=call is None and "callable" not in sub)
            overrides = self.sub(sub, "param_overrides", vp)
            self.free(overrides, f"{vp}.param_overrides")
            if "model" in overrides:
                self.err(f"{vp}.param_overrides.model", "use the variant's model field")
            weight = self.num(sub, "weight", vp, default=1.0, positive=True)
            if call is not None:
                # A callable variant serves a decorated function: there is no
                # SDK request to send elsewhere or to change, so these fields
                # would be silently ignored; refuse them instead.
                for key in ("base_url", "api_key_env", "param_overrides"):
                    if key in sub:
                        self.err(f"{vp}.{key}", _NOT_FOR_CALLABLE)
            elif "api_key_env" in sub and "base_url" not in sub:
                self.err(f"{vp}.api_key_env", "needs base_url (the endpoint the key is for)")
            out.append(
                rc.VariantConfig(
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

    def assignment(self, m: Mapping[str, Any], path: str, route: str) -> rc.AssignmentConfig:
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
        return rc.AssignmentConfig(
            unit=self.str_(sub, "unit", p, default="user_id") or "user_id",
            seed=self.str_(sub, "seed", p, default=route, max_len=1000) or route,
            bucket_version=1 if version is None else version,
            missing_unit="random",
            hash="sha256",
        )

    def rollout(self, m: Mapping[str, Any], path: str) -> rc.RolloutConfig:
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
                    if not ok or not 0 <= s <= 1:  # no float(): a 400-digit integer overflows
                        self.err(f"{p}.stages[{i}]", "must be a number between 0 and 1")
                    else:
                        vals.append(float(s))
                if len(vals) == len(raw_stages):
                    stages = tuple(vals)
        stage = self.int_(sub, "stage", p, default=None, minimum=0)
        if stage is not None and stages is not None and stage >= len(stages):
            self.err(f"{p}.stage", f"must be < len(stages) = {len(stages)}, got {stage}")
        return rc.RolloutConfig(
            variant_pct=vpct,
            holdout_pct=hpct,
            state=self.str_(sub, "state", p),
            stage=stage,
            stages=stages,
            shadow_pct=self.num(sub, "shadow_pct", p, default=0.0, unit_interval=True) or 0.0,
        )

    def breaker(self, m: Mapping[str, Any], path: str) -> rc.BreakerConfig:
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
        d = rc.BreakerConfig()
        return rc.BreakerConfig(
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
        if sub is not None:
            self.free(sub, f"{path}.policy")
        return None if sub is None else copy.deepcopy(dict(sub))


def _or(value: Any, default: Any) -> Any:
    return default if value is None else value


def validate_config(obj: object) -> rc.RouterConfig:
    """Validate a decoded JSON config and return its frozen form.

    Args:
        obj: the decoded JSON document (``json.loads`` of the body or file).

    Returns:
        The validated :class:`~logos_shift.routing.RouterConfig`.

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
    v = Validator()
    obj_map = v.obj(obj, "config")
    if obj_map is None:
        raise ConfigError(v.errors)
    v.keys(obj_map, "config", {"version", "routes", "ttl_s"}, root=True)
    version = v.int_(obj_map, "version", "", default=0, minimum=0)
    ttl = v.num(obj_map, "ttl_s", "", default=None, positive=True)
    routes: dict[str, rc.RouteConfig] = {}
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
    return rc.RouterConfig(version=version or 0, routes=routes, ttl_s=ttl)


def validate_route(name: str, obj: object) -> rc.RouteConfig:
    """Validate one route (the body of the server's ``PUT /v1/routes/{route}``).

    Args:
        name: the route's name (its key in ``routes``).
        obj: the decoded JSON route object.

    Returns:
        The validated :class:`~logos_shift.routing.RouteConfig`.

    Raises:
        ConfigError: with every problem found, paths prefixed ``routes.<name>``.
    """
    v = Validator()
    route = v.route(name, obj)
    if v.errors or route is None:
        raise ConfigError(v.errors)
    return route
