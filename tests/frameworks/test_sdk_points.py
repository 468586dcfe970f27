"""Issue 11's points that show on the SDKs themselves, in each framework environment's SDKs."""

from __future__ import annotations

import gc
import warnings
from typing import Any

import pytest
from anthropic.resources.messages import messages as _anthropic_messages

from ._checks import check_call_record
from .conftest import Tier

MESSAGES = [{"role": "user", "content": "one two three"}]


def _unawaited(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if "never awaited" in str(w.message)]


def test_unused_async_message_stream_creates_no_unawaited_coroutine(tier: Tier) -> None:
    """An AsyncAnthropic messages.stream(...) never entered warns no more than unpatched."""

    def scenario() -> Any:
        client = tier.client("anthropic")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            manager = client.messages.stream(
                model="claude-3-5-haiku-latest", max_tokens=64, messages=MESSAGES
            )
            del manager
            gc.collect()
        return _unawaited(caught)

    run = tier.run(scenario)  # the same warnings as unpatched (the SDK's own, if any)
    assert not any("logos_shift" in w or "arequest" in w for w in run.value)


@pytest.mark.parametrize("stream", [False, True])
def test_deprecated_model_warning_keeps_the_callers_location(tier: Tier, stream: bool) -> None:
    """The SDK's DeprecationWarning names the caller's file and line, patched as unpatched."""
    model = next(iter(_anthropic_messages.DEPRECATED_MODELS))

    def scenario() -> Any:
        client = tier.client("anthropic", is_async=False)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if stream:
                with client.messages.stream(model=model, max_tokens=64, messages=MESSAGES) as s:
                    s.until_done()
            else:
                client.messages.create(model=model, max_tokens=64, messages=MESSAGES)
        return [
            (w.filename, w.lineno) for w in caught if issubclass(w.category, DeprecationWarning)
        ]

    run = tier.run(scenario)  # the same file and line as unpatched
    assert run.value
    assert "logos_shift" not in run.value[0][0]
    if not stream:  # the stream() helper's stacklevel points one frame further up
        assert run.value[0][0] == __file__


def _views(resp: Any) -> dict[str, Any]:
    return {
        "dict": sorted(dict(resp)),
        "vars": sorted(vars(resp)),
        "iter": [k for k, _ in resp],
        "model_dump": sorted(resp.model_dump()),
        "fields_set": sorted(resp.model_fields_set),
    }


@pytest.mark.parametrize("sdk", ["openai", "anthropic"])
def test_logos_shift_id_is_not_part_of_the_response_data(tier: Tier, sdk: str) -> None:
    """dict(), vars() and iterating a response show the SDK's fields only, as unpatched."""

    def scenario() -> Any:
        client = tier.client(sdk, is_async=False)
        if sdk == "openai":
            resp = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        else:
            resp = client.messages.create(
                model="claude-3-5-haiku-latest", max_tokens=64, messages=MESSAGES
            )
        return _views(resp)

    run = tier.run(scenario)
    assert "logos_shift_id" not in run.value["dict"]


@pytest.mark.parametrize("sdk", ["openai", "anthropic"])
def test_response_carries_its_record_id(tier: Tier, sdk: str) -> None:
    """The patched response has ``logos_shift_id``, the id of its one record."""

    def scenario() -> Any:
        client = tier.client(sdk, is_async=False)
        if sdk == "openai":
            resp = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        else:
            resp = client.messages.create(
                model="claude-3-5-haiku-latest", max_tokens=64, messages=MESSAGES
            )
        return getattr(resp, "logos_shift_id", None)

    run = tier.run(scenario, compare=False)
    assert run.plain == ("returned", None)
    (rec,) = run.records
    check_call_record(rec, run.requests[0], stream=False)
    assert run.value == rec["id"]
