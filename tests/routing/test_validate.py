"""The routing config schema: accepted shapes, normalisation and exact error messages."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from logos_shift.routing import ConfigError, validate_config, validate_route

BASIC_EXAMPLE: dict[str, Any] = {
    "version": 42,
    "routes": {
        "support": {
            "match": {"dataset": "support", "model": "gpt-4o"},
            "control": {"name": "base", "model": "gpt-4o"},
            "variants": [{"name": "ft-1", "model": "ft:gpt-4o-mini:acme::x1", "fallback": True}],
            "assignment": {"unit": "user_id", "seed": "support", "bucket_version": 1},
            "rollout": {"variant_pct": 0.10, "holdout_pct": 0.0},
            "breaker": {"consecutive_errors": 5, "cooldown_s": 300},
            "kill_switch": False,
        }
    },
}

FULL_EXAMPLE: dict[str, Any] = {
    "version": 42,
    "ttl_s": 30,
    "routes": {
        "summarize-ticket": {
            "match": {"model": "gpt-4o"},
            "control": {"name": "base", "model": "gpt-4o"},
            "variants": [
                {
                    "name": "ft-v3",
                    "base_url": "https://api.together.xyz/v1",
                    "api_key_env": "TOGETHER_API_KEY",
                    "model": "acme/Meta-Llama-3.1-8B-Instruct-Reference-summarize-v3-8f2c",
                    "fallback": True,
                    "param_overrides": {"temperature": 0.2},
                }
            ],
            "assignment": {
                "unit": "user_id", "missing_unit": "random", "hash": "sha256",
                "seed": "summarize-ticket", "bucket_version": 3,
            },
            "rollout": {
                "state": "canary", "stages": [0.01, 0.05, 0.10, 0.25, 0.50, 1.0],
                "stage": 2, "variant_pct": 0.10, "holdout_pct": 0.05, "shadow_pct": 0.0,
            },
            "breaker": {
                "window_s": 60, "min_calls": 20, "max_error_rate": 0.5,
                "consecutive_errors": 5, "cooldown_s": 300,
            },
            "kill_switch": False,
            "policy": {"primary": "feedback_success", "margin": 0.02, "guardrails": {"x": 1}},
        }
    },
}  # fmt: skip


def errors_of(obj: object) -> list[str]:
    with pytest.raises(ConfigError) as info:
        validate_config(obj)
    return info.value.errors


def with_route(**changes: Any) -> dict[str, Any]:
    cfg = copy.deepcopy(BASIC_EXAMPLE)
    cfg["routes"]["support"].update(changes)
    return cfg


def test_basic_example_is_valid_and_defaults_are_filled() -> None:
    """A basic route validates, with defaults for unset breaker and assignment fields."""
    cfg = validate_config(BASIC_EXAMPLE)
    route = cfg.routes["support"]
    assert cfg.version == 42
    assert route.variants[0].model == "ft:gpt-4o-mini:acme::x1"
    assert route.breaker.window_s == 60.0
    assert route.breaker.min_calls == 20
    assert route.breaker.error_rate is None
    assert route.assignment.bucket_version == 1
    assert route.policy is None


def test_full_example_is_valid() -> None:
    """A route using every field (stages, policy, the max_error_rate alias) validates."""
    cfg = validate_config(FULL_EXAMPLE)
    route = cfg.routes["summarize-ticket"]
    assert route.breaker.error_rate == 0.5
    assert route.rollout.stages == (0.01, 0.05, 0.10, 0.25, 0.50, 1.0)
    assert route.policy == {"primary": "feedback_success", "margin": 0.02, "guardrails": {"x": 1}}
    assert route.variants[0].param_overrides == {"temperature": 0.2}
    assert cfg.ttl_s == 30.0


@pytest.mark.parametrize("example", [BASIC_EXAMPLE, FULL_EXAMPLE])
def test_to_json_round_trips(example: dict[str, Any]) -> None:
    """validate_config(cfg.to_json()) gives an equal config, and to_json is JSON-serialisable."""
    cfg = validate_config(example)
    doc = json.loads(json.dumps(cfg.to_json()))
    assert validate_config(doc) == cfg
    route = cfg.routes[next(iter(cfg.routes))]
    assert validate_route(route.name, route.to_json()) == route


def test_seed_defaults_to_route_name() -> None:
    """A route without an assignment block is bucketed by user_id with its name as seed."""
    cfg = copy.deepcopy(BASIC_EXAMPLE)
    del cfg["routes"]["support"]["assignment"]
    route = validate_config(cfg).routes["support"]
    assert (route.assignment.unit, route.assignment.seed) == ("user_id", "support")


def test_callable_variants_need_no_models() -> None:
    """A decorated-function route may name callables and omit every model."""
    route = validate_route(
        "search",
        {
            "match": {"dataset": "search"},
            "control": {"name": "v1"},
            "variants": [{"name": "v2", "callable": "v2"}],
            "rollout": {"variant_pct": 0.5},
        },
    )
    assert route.control.model is None
    assert route.variants[0].callable == "v2"
    assert route.variants[0].model is None


def test_empty_config_has_no_routes() -> None:
    """An object with no routes is a valid config that routes nothing."""
    assert validate_config({}).routes == {}
    assert validate_config({"version": 3, "routes": {}}).version == 3


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ([], ["config: expected object, got array"]),
        ({"routes": []}, ["routes: expected object, got array"]),
        ({"version": "1"}, ["version: expected integer, got string"]),
        ({"version": True}, ["version: expected integer, got boolean"]),
        ({"extra": 1}, ["extra: unknown key"]),
        ({"routes": {"a b": {}}}, [
            "routes.a b: route name must be 1-128 characters of letters, digits and _.:@+- "
            "starting with a letter or digit"
        ]),
        ({"routes": {"ok\n": {}}}, [
            "routes.ok\n: route name must be 1-128 characters of letters, digits and _.:@+- "
            "starting with a letter or digit"
        ]),
        ({"routes": {"x": 3}}, ["routes.x: expected object, got number"]),
    ],
)  # fmt: skip
def test_top_level_errors(config: object, expected: list[str]) -> None:
    """Top-level problems are reported with their path."""
    assert errors_of(config) == expected


def _variant(**changes: Any) -> dict[str, Any]:
    variant: dict[str, Any] = {"name": "ft-1", "model": "ft:x"}
    variant.update(changes)
    return with_route(variants=[variant])


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (with_route(variants=[{"name": "ft-1"}]), "routes.support.variants[0].model: required"),
        (with_route(variants=[{"model": "m"}]), "routes.support.variants[0].name: required"),
        (_variant(name=""), "routes.support.variants[0].name: must not be empty"),
        (_variant(model=5), "routes.support.variants[0].model: expected string, got number"),
        (_variant(fallback="yes"),
         "routes.support.variants[0].fallback: expected boolean, got string"),
        (_variant(colour="red"), "routes.support.variants[0].colour: unknown key"),
        (_variant(weight=0), "routes.support.variants[0].weight: must be > 0, got 0"),
        (_variant(base_url="ftp://x"),
         "routes.support.variants[0].base_url: must be an http(s) URL, got 'ftp://x'"),
        (_variant(param_overrides={"model": "x"}),
         "routes.support.variants[0].param_overrides.model: use the variant's model field"),
        (_variant(param_overrides=[1]),
         "routes.support.variants[0].param_overrides: expected object, got array"),
        (_variant(name="holdout"),
         "routes.support.variants[0].name: 'holdout' is reserved for the holdout arm"),
        (with_route(variants=[{"name": "a", "model": "m"}, {"name": "a", "model": "n"}]),
         "routes.support.variants[1].name: duplicate variant name 'a'"),
        (with_route(variants=[]), "routes.support.variants: must have at least one variant"),
        (with_route(variants={"name": "a"}),
         "routes.support.variants: expected array, got object"),
        (with_route(variants=["a"]), "routes.support.variants[0]: expected object, got string"),
        (with_route(variants=[{"name": "base", "model": "m"}]),
         "routes.support.control.name: same name as a variant: 'base'"),
        (with_route(control={"name": "base"}), "routes.support.control.model: required"),
        (with_route(control={"name": "", "model": "m"}),
         "routes.support.control.name: must not be empty"),
        (with_route(control=None), "routes.support.control: required"),
        (with_route(match={}), "routes.support.match: needs dataset or model"),
        (with_route(match={"tags.task": "x", "model": "m"}),
         "routes.support.match.tags.task: unknown key"),
        (with_route(match=None), "routes.support.match: required"),
        (with_route(rollout={"variant_pct": 1.5}),
         "routes.support.rollout.variant_pct: must be between 0 and 1, got 1.5"),
        (with_route(rollout={"holdout_pct": -0.1}),
         "routes.support.rollout.holdout_pct: must be between 0 and 1, got -0.1"),
        (with_route(rollout={"variant_pct": 0.7, "holdout_pct": 0.4}),
         "routes.support.rollout: variant_pct + holdout_pct must be <= 1, got 1.1"),
        (with_route(rollout={"variant_pct": "10%"}),
         "routes.support.rollout.variant_pct: expected number, got string"),
        (with_route(rollout={"variant_pct": float("nan")}),
         "routes.support.rollout.variant_pct: must be a finite number, got nan"),
        (with_route(rollout={"stages": [0.1, 2]}),
         "routes.support.rollout.stages[1]: must be a number between 0 and 1"),
        (with_route(rollout={"stages": [0.1, 0.5], "stage": 2}),
         "routes.support.rollout.stage: must be < len(stages) = 2, got 2"),
        (with_route(assignment={"unit": ""}),
         "routes.support.assignment.unit: must not be empty"),
        (with_route(assignment={"bucket_version": 1.5}),
         "routes.support.assignment.bucket_version: expected integer, got number"),
        (with_route(assignment={"hash": "fnv"}),
         "routes.support.assignment.hash: must be 'sha256', got 'fnv'"),
        (with_route(breaker={"cooldown_s": 0}),
         "routes.support.breaker.cooldown_s: must be > 0, got 0"),
        (with_route(breaker={"consecutive_errors": -1}),
         "routes.support.breaker.consecutive_errors: must be >= 0, got -1"),
        (with_route(breaker={"error_rate": 0.5, "max_error_rate": 0.5}),
         "routes.support.breaker.max_error_rate: give error_rate or max_error_rate, not both"),
        (with_route(breaker={"error_rate": 0}),
         "routes.support.breaker.error_rate: must be > 0, got 0"),
        (with_route(kill_switch="off"),
         "routes.support.kill_switch: expected boolean, got string"),
        (with_route(policy=[1]), "routes.support.policy: expected object, got array"),
        (with_route(shadow=True), "routes.support.shadow: unknown key"),
    ],
)  # fmt: skip
def test_route_errors_are_exact(config: dict[str, Any], expected: str) -> None:
    """Each kind of route mistake produces one precise, path-prefixed message."""
    assert errors_of(config) == [expected]


def test_all_errors_are_reported_at_once() -> None:
    """Several mistakes in one config are all listed, and str() of the error names them."""
    cfg = with_route(variants=[{"name": "ft-1"}], rollout={"variant_pct": 2})
    with pytest.raises(ConfigError) as info:
        validate_config(cfg)
    assert info.value.errors == [
        "routes.support.variants[0].model: required",
        "routes.support.rollout.variant_pct: must be between 0 and 1, got 2",
    ]
    assert "routes.support.variants[0].model: required" in str(info.value)
    assert isinstance(info.value, ValueError)


def test_two_routes_with_the_same_match_are_rejected() -> None:
    """Two routes matching the same (dataset, model) would be ambiguous and are refused."""
    cfg = copy.deepcopy(BASIC_EXAMPLE)
    cfg["routes"]["support-2"] = copy.deepcopy(cfg["routes"]["support"])
    assert errors_of(cfg) == ["routes.support-2.match: same match as routes.support"]


def test_validate_route_prefixes_errors_with_the_route_name() -> None:
    """validate_route reports paths under routes.<name>, as for a whole config."""
    with pytest.raises(ConfigError) as info:
        validate_route("support", {"match": {"dataset": "s"}, "control": {"model": "m"},
                                   "variants": [{"name": "v"}]})  # fmt: skip
    assert info.value.errors == ["routes.support.variants[0].model: required"]


def test_validated_config_does_not_alias_the_input() -> None:
    """Changing the input dict after validation does not change the validated config."""
    cfg_in = copy.deepcopy(FULL_EXAMPLE)
    cfg = validate_config(cfg_in)
    cfg_in["routes"]["summarize-ticket"]["variants"][0]["param_overrides"]["temperature"] = 9
    cfg_in["routes"]["summarize-ticket"]["policy"]["margin"] = 9
    route = cfg.routes["summarize-ticket"]
    assert route.variants[0].param_overrides == {"temperature": 0.2}
    assert route.policy is not None
    assert route.policy["margin"] == 0.02


def test_null_means_absent_for_optional_fields() -> None:
    """Optional fields given as null take their defaults."""
    route = validate_config(
        with_route(breaker=None, assignment=None, rollout=None, kill_switch=None, policy=None)
    ).routes["support"]
    assert route.breaker.consecutive_errors == 5
    assert route.rollout.variant_pct == 0.0
    assert route.kill_switch is False
