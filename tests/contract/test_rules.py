"""The capture rules the README states, on every registered entry point (drivers.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import logos_shift
from logos_shift.routing import validate_config
from logos_shift.testing import FakeProvider

from .drivers import ALL, DRIVERS, FUNCTIONS, SDK, Env, instance

VARIANT_KEY_ENV = "LS_CONTRACT_VARIANT_KEY"
_APPLY = pytest.mark.xfail(
    strict=True, reason="routing.apply() of per-variant endpoints: next commit"
)


def _feedback() -> None:
    logos_shift.provide_feedback(logos_shift.last_call_id() or "no-call-yet", "success")


# -- rule 1: enabled=False captures nothing ----------------------------------


@pytest.mark.parametrize("name", ALL)
def test_disabled_instance_captures_nothing(name: str, fake_provider: FakeProvider) -> None:
    """With ``enabled=False`` a call (and feedback given in its scope) records nothing."""
    with instance(enabled=False) as cap, cap.ls.as_default():
        DRIVERS[name].run(Env(cap.ls, fake_provider, hook=_feedback))
        assert cap.records() == []
    assert len(fake_provider.requests) == (1 if DRIVERS[name].is_sdk else 0)


# -- rule 2: dataset = decorator > context > the `dataset` setting -----------


@pytest.mark.parametrize("name", ALL)
def test_dataset_setting_is_the_default_dataset(name: str, fake_provider: FakeProvider) -> None:
    """A call with no dataset named anywhere is recorded in the ``dataset`` setting's dataset."""
    with instance(dataset="sales") as cap, cap.ls.as_default():
        DRIVERS[name].run(Env(cap.ls, fake_provider))
        assert [r["dataset"] for r in cap.records("call")] == ["sales"]


@pytest.mark.parametrize("name", ALL)
def test_context_dataset_beats_the_setting(name: str, fake_provider: FakeProvider) -> None:
    """``logos_shift.context(dataset=...)`` wins over the ``dataset`` setting."""
    with instance(dataset="sales") as cap, cap.ls.as_default():
        with logos_shift.context(dataset="support"):
            DRIVERS[name].run(Env(cap.ls, fake_provider))
        assert [r["dataset"] for r in cap.records("call")] == ["support"]


@pytest.mark.parametrize("name", FUNCTIONS)
def test_decorator_dataset_beats_the_context(name: str, fake_provider: FakeProvider) -> None:
    """The decorator's dataset wins over the context's."""
    with instance(dataset="sales") as cap, cap.ls.as_default():
        with logos_shift.context(dataset="support"):
            DRIVERS[name].run(Env(cap.ls, fake_provider, dataset="deco"))
        assert [r["dataset"] for r in cap.records("call")] == ["deco"]


@pytest.mark.parametrize("name", SDK)
def test_sdk_call_in_a_decorated_function_takes_its_dataset(
    name: str, fake_provider: FakeProvider
) -> None:
    """An SDK call inside a decorated function is recorded in the function's dataset."""
    with instance(dataset="sales") as cap, cap.ls.as_default():

        @cap.ls(dataset="deco")
        def outer() -> None:
            DRIVERS[name].run(Env(cap.ls, fake_provider))

        outer()
        datasets = {r["source"] == "function": r["dataset"] for r in cap.records("call")}
        assert datasets == {True: "deco", False: "deco"}


# -- rule 3: calls and feedback go to the instance in scope ------------------


@pytest.mark.parametrize("name", ALL)
def test_calls_and_feedback_go_to_the_instance_in_scope(
    name: str, fake_provider: FakeProvider
) -> None:
    """Module-level feedback given in B's scope lands in B, like B's call, never in default A."""
    driver = DRIVERS[name]
    with instance() as a, a.ls.as_default(), instance() as b:
        driver.run(Env(b.ls, fake_provider, hook=_feedback, activate=True))
        calls, feedback = b.records("call"), b.records("feedback")
        assert a.records() == []
    assert len(calls) == 1
    assert len(feedback) == 1
    if driver.is_sdk:  # the hook runs after the SDK call: last_call_id() is that call
        assert feedback[0]["target"] == calls[0]["id"]


@pytest.mark.parametrize("name", SDK)
def test_sdk_call_in_a_decorated_function_goes_to_its_instance(
    name: str, fake_provider: FakeProvider
) -> None:
    """Inside B's decorated function an SDK call and module-level feedback go to B."""
    with instance() as a, a.ls.as_default(), instance() as b:

        @b.ls(dataset="b")
        def outer() -> None:
            DRIVERS[name].run(Env(b.ls, fake_provider, hook=_feedback))

        outer()
        assert a.records() == []
        calls, feedback = b.records("call"), b.records("feedback")
    assert sorted(r["source"] == "function" for r in calls) == [False, True]
    sdk_call = next(r for r in calls if r["source"] != "function")
    assert [f["target"] for f in feedback] == [sdk_call["id"]]


# -- rule 4: a variant's base_url / api_key_env serve it from that endpoint --


def _routes(tmp_path: Path, model: str, base_url: str, pct: float) -> str:
    path = tmp_path / "routes.json"
    config = {
        "version": 1,
        "routes": {
            "r": {
                "match": {"model": model},
                "control": {"name": "base", "model": model},
                "variants": [
                    {
                        "name": "ft",
                        "model": "ft-variant",
                        "base_url": base_url,
                        "api_key_env": VARIANT_KEY_ENV,
                    },
                ],
                "rollout": {"variant_pct": pct},
            }
        },
    }
    path.write_text(json.dumps(config))
    return str(path)


def _model_requests(fp: FakeProvider) -> list[Any]:
    return [r for r in fp.requests if r.model is not None]


@pytest.mark.parametrize("name", SDK)
def test_variant_is_served_from_its_own_endpoint(
    name: str,
    fake_provider: FakeProvider,
    second_provider: FakeProvider,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A variant's share reaches its base_url with the key from api_key_env; control stays."""
    driver = DRIVERS[name]
    assert driver.base_url is not None
    assert driver.model is not None
    monkeypatch.setenv(VARIANT_KEY_ENV, "variant-key")
    routes = _routes(tmp_path, driver.model, driver.base_url(second_provider), 1.0)
    with instance(routes=routes) as cap, cap.ls.as_default():
        driver.run(Env(cap.ls, fake_provider))
        driver.run(Env(cap.ls, fake_provider))
        calls = cap.records("call")
    assert _model_requests(fake_provider) == []
    sent = _model_requests(second_provider)
    assert [(r.model, driver.api_key(r)) for r in sent] == [("ft-variant", "variant-key")] * 2
    assert [(c["variant"], c["requested_model"], c["served_model"]) for c in calls] == [
        ("ft", driver.model, "ft-variant")
    ] * 2


@pytest.mark.parametrize("name", SDK)
def test_control_stays_on_the_callers_endpoint(
    name: str,
    fake_provider: FakeProvider,
    second_provider: FakeProvider,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Control's share is sent to the caller's endpoint with the caller's key."""
    driver = DRIVERS[name]
    assert driver.base_url is not None
    assert driver.model is not None
    monkeypatch.setenv(VARIANT_KEY_ENV, "variant-key")
    routes = _routes(tmp_path, driver.model, driver.base_url(second_provider), 0.0)
    with instance(routes=routes) as cap, cap.ls.as_default():
        driver.run(Env(cap.ls, fake_provider))
        calls = cap.records("call")
    assert _model_requests(second_provider) == []
    sent = _model_requests(fake_provider)
    assert [(r.model, driver.api_key(r)) for r in sent] == [(driver.model, "caller-key")]
    assert calls[0]["variant"] == "base"


@pytest.mark.parametrize("name", SDK)
def test_fallback_returns_to_the_callers_endpoint(
    name: str,
    fake_provider: FakeProvider,
    second_provider: FakeProvider,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A failing variant endpoint falls back to control on the caller's endpoint and key."""
    driver = DRIVERS[name]
    assert driver.base_url is not None
    assert driver.model is not None
    monkeypatch.setenv(VARIANT_KEY_ENV, "variant-key")
    second_provider.fail_model("ft-variant", 500)
    routes = _routes(tmp_path, driver.model, driver.base_url(second_provider), 1.0)
    with instance(routes=routes) as cap, cap.ls.as_default():
        driver.run(Env(cap.ls, fake_provider))
        calls = cap.records("call")
    assert [r.model for r in _model_requests(second_provider)] == ["ft-variant"]
    sent = _model_requests(fake_provider)
    assert [(r.model, driver.api_key(r)) for r in sent] == [(driver.model, "caller-key")]
    assert calls[0]["fallback"] is True
    assert calls[0]["served_model"] == driver.model


@pytest.mark.parametrize("field", ["base_url", "api_key_env", "param_overrides"])
def test_fields_a_routed_function_cannot_apply_are_rejected(field: str) -> None:
    """A ``callable`` variant naming an endpoint or request overrides fails validation."""
    value: Any = {"base_url": "http://127.0.0.1:1/v1", "api_key_env": "K",
                  "param_overrides": {"temperature": 0}}[field]  # fmt: skip
    config = {
        "version": 1,
        "routes": {
            "search": {
                "match": {"dataset": "search"},
                "control": {"name": "base"},
                "variants": [{"name": "v2", "callable": "v2", field: value}],
                "rollout": {"variant_pct": 0.5},
            }
        },
    }
    with pytest.raises(logos_shift.ConfigError) as info:
        validate_config(config)
    assert any(f"variants[0].{field}" in e for e in info.value.errors)


@pytest.mark.parametrize("is_async", [False, True])
def test_stream_consumed_outside_its_scope_stays_with_its_instance(
    is_async: bool, fake_provider: FakeProvider
) -> None:
    """A stream started in ``B.activate()`` and read after the block is recorded by B."""
    import asyncio

    import openai

    kw: dict[str, Any] = {"model": "gpt-4o-mini", "stream": True,
                          "messages": [{"role": "user", "content": "a b c"}]}  # fmt: skip
    with instance() as a, a.ls.as_default(), instance() as b:
        if is_async:

            async def main() -> None:
                client = openai.AsyncOpenAI(base_url=fake_provider.openai_base_url, api_key="k")
                with b.ls.activate():
                    stream = await client.chat.completions.create(**kw)
                _ = [c async for c in stream]
                await client.close()

            asyncio.run(main())
        else:
            with openai.OpenAI(base_url=fake_provider.openai_base_url, api_key="k") as client:
                with b.ls.activate():
                    stream = client.chat.completions.create(**kw)
                _ = list(stream)
        assert a.records() == []
        assert [r["stream"]["status"] for r in b.records("call")] == ["completed"]


@pytest.mark.parametrize("name", SDK)
def test_a_bad_request_on_the_variant_does_not_fall_back(
    name: str,
    fake_provider: FakeProvider,
    second_provider: FakeProvider,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A 400 from the variant's endpoint is raised as it is (it would fail on control too)."""
    driver = DRIVERS[name]
    assert driver.base_url is not None
    assert driver.model is not None
    monkeypatch.setenv(VARIANT_KEY_ENV, "variant-key")
    second_provider.fail_model("ft-variant", 400)
    routes = _routes(tmp_path, driver.model, driver.base_url(second_provider), 1.0)
    with instance(routes=routes) as cap, cap.ls.as_default():
        with pytest.raises(Exception) as info:
            driver.run(Env(cap.ls, fake_provider))
        calls = cap.records("call")
    assert getattr(info.value, "status_code", None) == 400
    assert _model_requests(fake_provider) == []
    assert [(c["fallback"], c["error"]["status"]) for c in calls] == [(False, 400)]


# -- capture_content and redact: applied once, to every entry point's record -


@pytest.mark.parametrize("name", ALL)
def test_capture_content_false_drops_input_and_output(
    name: str, fake_provider: FakeProvider
) -> None:
    """``capture_content=False`` records the call without its input and output."""
    with instance(capture_content=False) as cap, cap.ls.as_default():
        DRIVERS[name].run(Env(cap.ls, fake_provider))
        calls = cap.records("call")
    assert [(c["input"], c["output"]) for c in calls] == [(None, None)]
    assert calls[0]["latency_ms"] is not None


@pytest.mark.parametrize("name", ALL)
def test_redact_sees_and_can_drop_every_record(name: str, fake_provider: FakeProvider) -> None:
    """The ``redact`` hook gets each entry point's complete record; ``None`` drops it."""
    seen: list[str] = []

    def redact(record: dict[str, Any]) -> dict[str, Any] | None:
        seen.append(record["type"])
        return None if record["type"] == "feedback" else {**record, "metadata": {"r": 1}}

    with instance(redact=redact) as cap, cap.ls.as_default():
        DRIVERS[name].run(Env(cap.ls, fake_provider, hook=_feedback))
        records = cap.records()
    assert sorted(seen) == ["call", "feedback"]
    assert [(r["type"], r["metadata"]) for r in records] == [("call", {"r": 1})]


# -- routes match on the resolved dataset ------------------------------------


def _dataset_route(tmp_path: Path, variant: dict[str, Any], control: dict[str, Any]) -> str:
    path = tmp_path / "routes.json"
    config = {"version": 1, "routes": {"r": {
        "match": {"dataset": "sales"}, "control": control, "variants": [variant],
        "rollout": {"variant_pct": 1.0}}}}  # fmt: skip
    path.write_text(json.dumps(config))
    return str(path)


@pytest.mark.parametrize("name", SDK)
def test_sdk_calls_are_routed_by_the_dataset_setting(
    name: str, fake_provider: FakeProvider, tmp_path: Path
) -> None:
    """A route on dataset ``sales`` routes SDK calls of an instance whose dataset is ``sales``."""
    driver = DRIVERS[name]
    routes = _dataset_route(tmp_path, {"name": "ft", "model": "ft-variant"},
                            {"name": "base", "model": driver.model})  # fmt: skip
    with instance(routes=routes, dataset="sales") as cap, cap.ls.as_default():
        driver.run(Env(cap.ls, fake_provider))
        calls = cap.records("call")
    assert [r.model for r in _model_requests(fake_provider)] == ["ft-variant"]
    assert [(c["dataset"], c["variant"]) for c in calls] == [("sales", "ft")]


@pytest.mark.parametrize("name", [n for n in FUNCTIONS if n.startswith("routed-")])
def test_routed_functions_are_routed_by_the_dataset_setting(
    name: str, fake_provider: FakeProvider, tmp_path: Path
) -> None:
    """A route on dataset ``sales`` sends a routed function's calls to its ``callable`` variant."""
    routes = _dataset_route(tmp_path, {"name": "v2", "callable": "v2"}, {"name": "base"})
    with instance(routes=routes, dataset="sales") as cap, cap.ls.as_default():
        DRIVERS[name].run(Env(cap.ls, fake_provider))
        calls = cap.records("call")
    assert [(c["dataset"], c["variant"], c["output"]) for c in calls] == [
        ("sales", "v2", {"x": 1, "variant": "v2"})
    ]
