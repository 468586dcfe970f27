"""Router.decide: matching, assignment, holdout, kill switch, callables, failure injection."""

from __future__ import annotations

import json
import random
from collections import Counter
from typing import Any

import pytest

from logos_shift import _guard
from logos_shift.routing import validate_config
from logos_shift.routing.router import Decision, Router


def route(
    dataset: str | None = "support",
    model: str | None = "gpt-4o",
    variant_pct: float = 0.10,
    holdout_pct: float = 0.0,
    **extra: Any,
) -> dict[str, Any]:
    match = {k: v for k, v in (("dataset", dataset), ("model", model)) if v is not None}
    body: dict[str, Any] = {
        "match": match,
        "control": {"name": "base", "model": "gpt-4o"},
        "variants": [{"name": "ft-1", "model": "ft:mini", "param_overrides": {"temperature": 0}}],
        "rollout": {"variant_pct": variant_pct, "holdout_pct": holdout_pct},
    }
    body.update(extra)
    return body


def router_with(routes: dict[str, Any], version: int = 1, seed: int = 7) -> Router:
    r = Router(rng=random.Random(seed))
    r.set_config(validate_config({"version": version, "routes": routes}))
    return r


def pick(r: Router, dataset: str | None, model: str | None, metadata: Any) -> Decision:
    d = r.decide(dataset, model, metadata)
    assert d is not None
    return d


def test_no_config_returns_none() -> None:
    """Without any config every call keeps its model (decide returns None)."""
    r = Router()
    assert r.config is None
    assert r.decide("support", "gpt-4o", {"user_id": "u1"}) is None
    assert r.stats()["config"]["routes"] == 0


def test_unmatched_call_returns_none() -> None:
    """A call whose dataset and model match no route is left alone."""
    r = router_with({"support": route()})
    assert r.decide("sales", "gpt-4o", {"user_id": "u1"}) is None
    assert r.decide("support", "gpt-4o-mini", {"user_id": "u1"}) is None
    assert r.decide(None, None, None) is None


def test_most_specific_match_wins() -> None:
    """dataset+model beats dataset-only, which beats model-only."""
    r = router_with(
        {
            "both": route("support", "gpt-4o", variant_pct=0.0),
            "ds": route("support", None, variant_pct=0.0),
            "model": route(None, "gpt-4o", variant_pct=0.0),
        }
    )
    assert pick(r, "support", "gpt-4o", {}).route == "both"
    assert pick(r, "support", "claude", {}).route == "ds"
    assert pick(r, None, "gpt-4o", {}).route == "model"
    assert pick(r, "sales", "gpt-4o", {}).route == "model"
    assert pick(r, "support", None, {}).route == "ds"


def test_variant_share_and_stickiness_over_10k_users() -> None:
    """At variant_pct 0.10, 10 % ± 1 % of 10,000 users get the variant, each always the same."""
    r = router_with({"support": route()})
    first: dict[str, str | None] = {}
    for i in range(10_000):
        d = r.decide("support", "gpt-4o", {"user_id": f"u{i}"})
        assert d is not None
        first[f"u{i}"] = d.model
    share = sum(m == "ft:mini" for m in first.values()) / 10_000
    assert 0.09 <= share <= 0.11
    for uid, model in list(first.items())[:2000]:
        for _ in range(3):
            d = r.decide("support", "gpt-4o", {"user_id": uid})
            assert d is not None
            assert d.model == model


def test_variant_decision_carries_the_variant_settings() -> None:
    """A variant decision carries model, overrides, fallback flag, control model and versions."""
    r = router_with({"support": route(variant_pct=1.0)}, version=9)
    d = r.decide("support", "gpt-4o", {"user_id": "u1"})
    assert d == Decision(
        route="support", variant="ft-1", arm="variant", model="ft:mini", control_model="gpt-4o",
        fallback=True, param_overrides={"temperature": 0}, reason="bucket", bucket_version=1,
        config_version=9,
    )  # fmt: skip
    assert d.is_variant
    with pytest.raises(TypeError):
        d.param_overrides["temperature"] = 1  # type: ignore[index]


def test_control_decision() -> None:
    """Control serves the control model, with no overrides and no fallback."""
    r = router_with({"support": route(variant_pct=0.0)})
    d = r.decide("support", "gpt-4o", {"user_id": "u1"})
    assert d is not None
    assert (d.arm, d.variant, d.model, d.fallback, dict(d.param_overrides)) == (
        "control", "base", "gpt-4o", False, {},
    )  # fmt: skip
    assert not d.is_variant


def test_holdout_share() -> None:
    """holdout_pct keeps that share of units on the control model, labelled holdout."""
    r = router_with({"support": route(variant_pct=0.2, holdout_pct=0.1)})
    arms = Counter()
    for i in range(20_000):
        d = r.decide("support", "gpt-4o", {"user_id": i})
        assert d is not None
        arms[d.arm] += 1
        if d.arm == "holdout":
            assert (d.variant, d.model) == ("holdout", "gpt-4o")
    assert abs(arms["holdout"] / 20_000 - 0.1) < 0.01
    assert abs(arms["variant"] / 20_000 - 0.2) < 0.01


def test_configured_metadata_key_is_the_unit() -> None:
    """assignment.unit names the metadata key that is bucketed (here tenant, not user_id)."""
    r = router_with({"support": route(variant_pct=0.5, assignment={"unit": "tenant"})})
    models = set()
    for i in range(50):
        d = r.decide("support", "gpt-4o", {"tenant": "acme", "user_id": f"u{i}"})
        assert d is not None
        assert d.reason == "bucket"
        models.add(d.model)
    assert len(models) == 1


def test_no_unit_is_random_per_call() -> None:
    """A call without a unit is assigned at random per call, at the configured share."""
    r = router_with({"support": route(variant_pct=0.3)})
    decisions = [r.decide("support", "gpt-4o", {}) for _ in range(10_000)]
    assert all(d is not None and d.reason == "random" for d in decisions)
    share = sum(d is not None and d.is_variant for d in decisions) / 10_000
    assert 0.28 < share < 0.32
    empty = r.decide("support", "gpt-4o", {"user_id": ""})
    assert empty is not None
    assert empty.reason == "random"


def test_unhashable_unit_is_bucketed_by_its_string() -> None:
    """A list-valued unit does not break decide; it is bucketed stably by its text."""
    r = router_with({"support": route(variant_pct=0.5)})
    a = r.decide("support", "gpt-4o", {"user_id": ["x", 1]})
    b = r.decide("support", "gpt-4o", {"user_id": ["x", 1]})
    assert a is not None
    assert a == b
    assert a.reason == "bucket"


def test_routes_are_bucketed_independently() -> None:
    """Two routes with different seeds do not put the same users in their variants."""
    r = router_with(
        {"a": route("a", None, variant_pct=0.1), "b": route("b", None, variant_pct=0.1)}
    )
    users = [f"u{i}" for i in range(20_000)]
    in_a = {u for u in users if pick(r, "a", None, {"user_id": u}).is_variant}
    in_b = {u for u in users if pick(r, "b", None, {"user_id": u}).is_variant}
    assert abs(len(in_a & in_b) / len(in_a) - 0.1) < 0.03


def test_ramp_through_config_swaps_keeps_exposed_users() -> None:
    """Swapping in configs with a growing variant_pct never moves a variant user back."""
    r = Router()
    users = [f"u{i}" for i in range(5000)]
    previous: set[str] = set()
    for version, pct in enumerate((0.01, 0.05, 0.25, 0.5), start=1):
        r.set_config(validate_config({"version": version, "routes": {"s": route(variant_pct=pct)}}))
        now = {u for u in users if pick(r, "support", "gpt-4o", {"user_id": u}).is_variant}
        assert previous <= now
        previous = now


def test_bucket_version_bump_reshuffles() -> None:
    """A new bucket_version assigns a different set of users to the variant."""
    users = [f"u{i}" for i in range(5000)]
    sets = []
    for bv in (1, 2):
        r = router_with({"s": route(variant_pct=0.2, assignment={"bucket_version": bv})})
        sets.append({u for u in users if pick(r, "support", "gpt-4o", {"user_id": u}).is_variant})
    overlap = len(sets[0] & sets[1]) / len(sets[0])
    assert overlap < 0.3


def test_kill_switch_sends_everyone_to_control() -> None:
    """kill_switch: true serves control to every unit, even at variant_pct 1.0."""
    r = router_with({"support": route(variant_pct=1.0, kill_switch=True)})
    for i in range(200):
        d = r.decide("support", "gpt-4o", {"user_id": f"u{i}"})
        assert d is not None
        assert (d.arm, d.model, d.reason) == ("control", "gpt-4o", "kill_switch")


def test_kill_switch_takes_effect_on_the_next_config_swap() -> None:
    """A new config with the kill switch on changes the very next decision."""
    r = router_with({"support": route(variant_pct=1.0)})
    assert pick(r, "support", "gpt-4o", {"user_id": "u1"}).is_variant
    killed = route(variant_pct=1.0, kill_switch=True)
    r.set_config(validate_config({"version": 2, "routes": {"support": killed}}))
    assert pick(r, "support", "gpt-4o", {"user_id": "u1"}).reason == "kill_switch"


def test_callable_variant_for_decorated_functions() -> None:
    """A route for a decorated function selects an alternative callable by name."""
    cfg = {
        "search": {
            "match": {"dataset": "search"},
            "control": {"name": "v1"},
            "variants": [{"name": "v2", "callable": "v2"}],
            "rollout": {"variant_pct": 1.0},
        }
    }
    r = router_with(cfg)
    d = r.decide("search", None, {"user_id": "u1"})
    assert d is not None
    assert (d.variant, d.callable, d.model, d.control_model) == ("v2", "v2", None, None)
    r.set_config(validate_config({"routes": {"search": {**cfg["search"], "kill_switch": True}}}))
    d = r.decide("search", None, {"user_id": "u1"})
    assert d is not None
    assert (d.variant, d.callable, d.model) == ("v1", None, None)


def test_weighted_variants_split_the_variant_share() -> None:
    """Two variants with weights 1:1 share variant_pct evenly."""
    body = route(variant_pct=0.4)
    body["variants"] = [{"name": "a", "model": "ma"}, {"name": "b", "model": "mb"}]
    r = router_with({"support": body})
    counts = Counter(pick(r, "support", "gpt-4o", {"user_id": i}).variant for i in range(20_000))
    assert abs(counts["a"] / 20_000 - 0.2) < 0.015
    assert abs(counts["b"] / 20_000 - 0.2) < 0.015


def test_set_config_none_turns_routing_off() -> None:
    """set_config(None) removes every route."""
    r = router_with({"support": route()})
    r.set_config(None)
    assert r.decide("support", "gpt-4o", {"user_id": "u1"}) is None


def test_injected_fault_raises_and_the_guard_keeps_the_requested_model() -> None:
    """With the router step failing, decide raises and a guarded caller uses the requested model."""
    r = router_with({"support": route(variant_pct=1.0)})
    _guard.FAULTS.add("router")
    with pytest.raises(_guard.InjectedFault):
        r.decide("support", "gpt-4o", {"user_id": "u1"})

    def guarded_model(requested: str) -> str:
        decision = None
        with _guard.guard("router"):
            decision = r.decide("support", requested, {"user_id": "u1"})
        return requested if decision is None or decision.model is None else decision.model

    before = _guard.ERRORS["router"]
    assert guarded_model("gpt-4o") == "gpt-4o"
    assert _guard.ERRORS["router"] == before + 1
    _guard.FAULTS.clear()
    assert guarded_model("gpt-4o") == "ft:mini"


def test_stats_reports_the_config_in_force() -> None:
    """stats() shows version, route count and origin of the config in force."""
    r = router_with({"support": route()}, version=5)
    cfg = r.stats()["config"]
    assert (cfg["version"], cfg["routes"], cfg["origin"]) == (5, 1, "manual")
    assert r.stats()["source"] is None
    assert r.next_poll_due() == float("inf")
    assert r.poll() == float("inf")


def test_from_settings_uses_the_routes_file(tmp_path: Any) -> None:
    """Router.from_settings wires the routes= file from resolved settings."""
    from logos_shift._settings import resolve

    path = tmp_path / "routes.json"
    path.write_text(json.dumps({"version": 2, "routes": {"support": route(variant_pct=1.0)}}))
    r = Router.from_settings(resolve({"routes": str(path)}))
    assert pick(r, "support", "gpt-4o", {"user_id": "u1"}).model == "ft:mini"
    assert Router.from_settings(resolve({})).source is None


def test_concurrent_decisions_during_config_swaps() -> None:
    """Threads deciding while configs are swapped always see one whole config, never an error."""
    import threading

    r = router_with({"support": route(variant_pct=1.0)})
    configs = [
        validate_config({"version": v, "routes": {"support": {**route(variant_pct=1.0),
                         "variants": [{"name": "ft-1", "model": f"m{v}"}]}}})
        for v in range(1, 6)
    ]  # fmt: skip
    seen: list[tuple[int, str | None]] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def worker() -> None:
        try:
            while not stop.is_set():
                d = pick(r, "support", "gpt-4o", {"user_id": "u1"})
                seen.append((d.config_version, d.model))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for _ in range(200):
        for cfg in configs:
            r.set_config(cfg)
    stop.set()
    for t in threads:
        t.join(10)
    assert errors == []
    assert seen
    assert all(model == f"m{version}" or version == 1 for version, model in seen)
