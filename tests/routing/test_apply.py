"""``routing.decision.apply``: the one place a routing decision changes an SDK request."""

from __future__ import annotations

import logging

import pytest

from logos_shift.routing.decision import Decision, Endpoint, apply

REQUEST = {"model": "base", "messages": [{"role": "user", "content": "hi"}], "temperature": 1}


def _variant(**kw: object) -> Decision:
    return Decision(route="r", variant="ft", arm="variant", model="ft-1", control_model="base",
                    **kw)  # type: ignore[arg-type]  # fmt: skip


def test_model_and_overrides_are_applied_to_a_copy() -> None:
    """The variant's model and param_overrides are set; the caller's dict is untouched."""
    applied = apply(_variant(param_overrides={"temperature": 0}), REQUEST)
    assert applied is not None
    assert applied.kwargs == {**REQUEST, "model": "ft-1", "temperature": 0}
    assert applied.endpoint is None
    assert REQUEST["model"] == "base"
    assert REQUEST["temperature"] == 1


def test_endpoint_carries_the_key_from_api_key_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """A variant's base_url becomes the endpoint, with the key read from its api_key_env."""
    monkeypatch.setenv("LS_TEST_APPLY_KEY", "sk-variant")
    applied = apply(_variant(base_url="http://h/v1", api_key_env="LS_TEST_APPLY_KEY"), REQUEST)
    assert applied is not None
    assert applied.endpoint == Endpoint("http://h/v1", "sk-variant")


def test_no_api_key_env_keeps_the_callers_key() -> None:
    """Without api_key_env the derived client keeps the caller's key (``api_key`` None)."""
    applied = apply(_variant(base_url="http://h/v1"), REQUEST)
    assert applied is not None
    assert applied.endpoint == Endpoint("http://h/v1", None)


def test_a_missing_key_is_not_applied(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """An unset api_key_env keeps the call on the caller's endpoint (never leaks its key)."""
    monkeypatch.delenv("LS_TEST_APPLY_MISSING", raising=False)
    with caplog.at_level(logging.WARNING, logger="logos_shift"):
        applied = apply(_variant(base_url="http://h/v1", api_key_env="LS_TEST_APPLY_MISSING"),
                        REQUEST)  # fmt: skip
    assert applied is None
    assert "LS_TEST_APPLY_MISSING" in caplog.text


def test_control_keeps_the_callers_endpoint() -> None:
    """A control decision sets the control model and never names an endpoint."""
    d = Decision(route="r", variant="base", arm="control", model="base", control_model="base")
    applied = apply(d, {**REQUEST, "model": "other"})
    assert applied is not None
    assert applied.kwargs["model"] == "base"
    assert applied.endpoint is None
