"""instructor (from_openai / from_anthropic: structured output by forced tool calls), patched."""

from __future__ import annotations

from typing import Any

import instructor
import pytest
from pydantic import BaseModel

import logos_shift

from ._checks import check_call_record, check_export, output_tool_calls
from .conftest import Tier

PROMPT = "one two three"
MESSAGES = [{"role": "user", "content": PROMPT}]


class Weather(BaseModel):
    city: str
    degrees: int


def _openai(tier: Tier, retries: int = 0) -> Any:
    return instructor.from_openai(tier.client("openai", is_async=False, retries=retries))


def _anthropic(tier: Tier) -> Any:
    return instructor.from_anthropic(tier.client("anthropic", is_async=False))


def _ask(ic: Any, sdk: str, **kw: Any) -> Any:
    if sdk == "openai":
        return ic.chat.completions.create(
            model="gpt-4o-mini", response_model=Weather, messages=MESSAGES, **kw
        )
    return ic.messages.create(
        model="claude-3-5-haiku-latest",
        max_tokens=256,
        response_model=Weather,
        messages=MESSAGES,
        **kw,
    )


@pytest.mark.parametrize("sdk", ["openai", "anthropic"])
def test_structured_object_is_recorded_as_its_tool_call(tier: Tier, sdk: str) -> None:
    """One forced tool call: the record's arguments are the object instructor returned."""
    make = _openai if sdk == "openai" else _anthropic
    run = tier.run(lambda: _ask(make(tier), sdk))
    assert isinstance(run.value, Weather)
    (rec,) = run.records
    check_call_record(rec, run.requests[0], stream=False)
    ((name, args),) = output_tool_calls(rec)
    assert name == "Weather"
    assert args == run.value.model_dump()
    check_export(run.examples)
    (ex,) = run.examples
    assert ex["tools"][0]["function"]["name"] == "Weather"


def test_async_client_is_recorded(tier: Tier) -> None:
    """from_openai over AsyncOpenAI: the same single record."""

    async def scenario() -> Any:
        ic = instructor.from_openai(tier.client("openai"))
        return await ic.chat.completions.create(
            model="gpt-4o-mini", response_model=Weather, messages=MESSAGES
        )

    run = tier.run(scenario)
    (rec,) = run.records
    check_call_record(rec, run.requests[0], stream=False)
    assert output_tool_calls(rec)[0][1] == run.value.model_dump()


def test_partial_stream_is_one_completed_record(tier: Tier) -> None:
    """create_partial: the partial objects stream; one completed record with the full arguments."""

    def scenario() -> Any:
        ic = _openai(tier)
        parts = list(
            ic.chat.completions.create_partial(
                model="gpt-4o-mini", response_model=Weather, messages=MESSAGES
            )
        )
        return [p.model_dump() for p in parts]

    run = tier.run(scenario)
    (rec,) = run.records
    check_call_record(rec, run.requests[0], stream=True)
    assert output_tool_calls(rec)[0][1] == run.value[-1]
    check_export(run.examples)


def test_rate_limit_retried_by_the_sdk_is_one_record(tier: Tier) -> None:
    """429 then 200 (the SDK's retry, under instructor): one successful record."""

    def scenario() -> Any:
        tier.fp.script(status=429, retry_after=0.01)
        return _ask(_openai(tier, retries=2), "openai")

    run = tier.run(scenario)
    assert len(run.requests) == 2
    (rec,) = run.records
    check_call_record(rec, run.requests[1], stream=False)


def test_server_error_gives_one_error_record(tier: Tier) -> None:
    """A 500: instructor raises; one error record; nothing exported."""

    def scenario() -> Any:
        tier.fp.script(status=500)
        return _ask(_openai(tier), "openai", max_retries=0)

    run = tier.run(scenario)
    assert run.patched[0] == "raised"
    (rec,) = run.records
    check_call_record(rec, run.requests[0], stream=False, failed=True)
    assert run.examples == []


def test_invalid_answer_reasked_gives_a_record_per_attempt(tier: Tier) -> None:
    """A reply that fails validation is re-asked: a record per request, in order."""

    def scenario() -> Any:
        tier.fp.script(tool_calls=[{"name": "Weather", "arguments": {"city": "x"}}])
        tier.fp.script(tool_calls=[{"name": "Weather", "arguments": {"city": "y", "degrees": 3}}])
        return _ask(_openai(tier), "openai", max_retries=2)

    run = tier.run(scenario)
    assert run.value.model_dump() == {"city": "y", "degrees": 3}
    assert len(run.requests) == len(run.records) == 2
    for rec, req in zip(run.records, run.requests, strict=True):
        check_call_record(rec, req, stream=False)
    assert [output_tool_calls(r)[0][1] for r in run.records] == [
        {"city": "x"},
        {"city": "y", "degrees": 3},
    ]


@pytest.mark.parametrize("sdk", ["openai", "anthropic"])
def test_client_built_before_patching_is_captured(tier: Tier, sdk: str) -> None:
    """An instructor client made before patch_all() is captured like one made after."""
    logos_shift.unpatch_all()
    ic = _openai(tier) if sdk == "openai" else _anthropic(tier)
    logos_shift.patch_all()
    result = _ask(ic, sdk)
    assert isinstance(result, Weather)
    (rec,) = tier.records()
    check_call_record(rec, tier.fp.requests[-1], stream=False)
