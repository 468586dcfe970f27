"""openai-agents (Runner over the Responses and Chat Completions models) under the patch."""

from __future__ import annotations

from importlib.metadata import version
from typing import Any

import pytest
from agents import (
    Agent,
    OpenAIChatCompletionsModel,
    OpenAIResponsesModel,
    Runner,
    function_tool,
    set_tracing_disabled,
)
from pydantic import BaseModel

from ._checks import check_call_record, check_export, output_text, output_tool_calls, placeholders
from .conftest import Tier

AGENTS_VERSION = tuple(int(p) for p in version("openai-agents").split(".")[:2])

# The SDK would otherwise export traces to api.openai.com from a background thread.
set_tracing_disabled(True)

MODEL = "gpt-4o-mini"
PROMPT = "one two three"


class Weather(BaseModel):
    city: str
    degrees: int


@function_tool
def get_weather(city: str) -> str:
    """Tell the weather in a city."""
    return f"sunny in {city}"


def _agent(tier: Tier, api: str = "responses", retries: int = 0, **kw: Any) -> Agent[Any]:
    client = tier.client("openai", retries=retries)
    model: Any = (
        OpenAIResponsesModel(MODEL, client)
        if api == "responses"
        else OpenAIChatCompletionsModel(MODEL, client)
    )
    return Agent(name="helper", instructions="Be brief.", model=model, **kw)


def _summary(result: Any) -> dict[str, Any]:
    return {
        "final_output": result.final_output,
        "items": [type(i).__name__ for i in result.new_items],
        "responses": [r.output for r in result.raw_responses],
    }


async def _streamed(agent: Agent[Any], prompt: str) -> dict[str, Any]:
    result = Runner.run_streamed(agent, prompt)
    deltas = []
    async for event in result.stream_events():
        if event.type == "raw_response_event" and getattr(event.data, "delta", None):
            deltas.append(event.data.delta)
    return {"deltas": deltas, **_summary(result)}


# -- text ---------------------------------------------------------------------


@pytest.mark.parametrize("api", ["responses", "chat"])
def test_text_reply_gives_one_record_per_request(tier: Tier, api: str) -> None:
    """Runner.run: one record, its output the agent's final output, its id the model's."""

    async def scenario() -> Any:
        result = await Runner.run(_agent(tier, api), PROMPT)
        return _summary(result) | {"ids": [r.response_id for r in result.raw_responses]}

    run = tier.run(scenario)
    assert run.value["final_output"] == f"Echo: {PROMPT}"
    (rec,) = run.records
    check_call_record(rec, run.requests[0], stream=False)
    assert output_text(rec) == run.value["final_output"]
    if api == "chat":
        assert rec["source"] == "openai.chat.completions"
        check_export(run.examples)
        assert run.examples[0]["messages"][-1]["content"] == run.value["final_output"]
    else:
        assert rec["source"] == "openai.responses"
        assert rec["response_id"] == run.value["ids"][0]


@pytest.mark.parametrize("api", ["responses", "chat"])
def test_records_hold_no_sdk_placeholders(tier: Tier, api: str) -> None:
    """Unset options (`omit`) are left out of the record, as the SDK leaves them out of the body."""

    async def scenario() -> Any:
        return _summary(await Runner.run(_agent(tier, api), PROMPT))

    run = tier.run(scenario)
    (rec,) = run.records
    assert placeholders(rec) == []
    assert set(rec["input"]) <= set(run.requests[0].body)


# -- tools and structured output ----------------------------------------------


@pytest.mark.parametrize("api", ["responses", "chat"])
def test_tool_call_turns_give_a_record_each(tier: Tier, api: str) -> None:
    """A tool round trip is two requests: the tool call, then the answer; two records."""

    async def scenario() -> Any:
        return _summary(await Runner.run(_agent(tier, api, tools=[get_weather]), PROMPT))

    run = tier.run(scenario)
    assert run.value["items"] == ["ToolCallItem", "ToolCallOutputItem", "MessageOutputItem"]
    first, second = run.records
    check_call_record(first, run.requests[0], stream=False)
    check_call_record(second, run.requests[1], stream=False)
    assert output_tool_calls(first) == [("get_weather", {"city": "fake"})]
    assert output_text(second) == run.value["final_output"] == f"Echo: {PROMPT}"
    if api == "chat":
        check_export(run.examples)
        assert [e["messages"][-1].get("tool_calls") is not None for e in run.examples] == [
            True,
            False,
        ]


def test_structured_output_is_recorded_as_the_json_the_agent_parsed(tier: Tier) -> None:
    """output_type=Model: the recorded text is the JSON the agent turned into the object."""

    async def scenario() -> Any:
        result = await Runner.run(_agent(tier, output_type=Weather), PROMPT)
        return _summary(result)

    run = tier.run(scenario)
    assert isinstance(run.value["final_output"], Weather)
    (rec,) = run.records
    check_call_record(rec, run.requests[0], stream=False)
    assert Weather.model_validate_json(output_text(rec) or "") == run.value["final_output"]


# -- streaming ----------------------------------------------------------------


@pytest.mark.skipif(
    AGENTS_VERSION < (0, 2),
    reason="openai-agents 0.1.0's chat-completions stream fails on openai 1.109 (ValidationError), "
    "with or without logos_shift",
)
def test_chat_model_stream_is_recorded_completed(tier: Tier) -> None:
    """run_streamed on the Chat Completions model: one completed stream record."""
    run = tier.run(lambda: _streamed(_agent(tier, "chat"), PROMPT))
    assert "".join(run.value["deltas"]) == run.value["final_output"] == f"Echo: {PROMPT}"
    (rec,) = run.records
    check_call_record(rec, run.requests[0], stream=True)
    assert output_text(rec) == run.value["final_output"]
    check_export(run.examples)


def test_responses_stream_is_recorded_completed(tier: Tier) -> None:
    """run_streamed on the Responses model: a completed stream record with output and id."""
    run = tier.run(lambda: _streamed(_agent(tier), PROMPT))
    assert "".join(run.value["deltas"]) == run.value["final_output"] == f"Echo: {PROMPT}"
    (rec,) = run.records
    check_call_record(rec, run.requests[0], stream=True)
    assert output_text(rec) == run.value["final_output"]


def test_responses_stream_cut_short_is_recorded_as_an_error(tier: Tier) -> None:
    """A stream the server drops mid-way: the framework raises, the record says error."""

    async def scenario() -> Any:
        tier.fp.script(disconnect_after_chunks=4)
        return await _streamed(_agent(tier), PROMPT)

    run = tier.run(scenario)
    assert run.patched[0] == "raised"
    (rec,) = run.records
    check_call_record(rec, run.requests[0], stream=True, failed=True)


# -- errors and retries -------------------------------------------------------


@pytest.mark.parametrize("api", ["responses", "chat"])
def test_server_error_gives_one_error_record(tier: Tier, api: str) -> None:
    """A 500 the agent raises: one record with the error and its status."""

    async def scenario() -> Any:
        tier.fp.script(status=500)
        return await Runner.run(_agent(tier, api), PROMPT)

    run = tier.run(scenario)
    assert run.patched == ("raised", ("InternalServerError", 500))
    (rec,) = run.records
    check_call_record(rec, run.requests[0], stream=False, failed=True)
    assert rec["error"]["status"] == 500
    assert rec["output"] is None
    assert run.examples == []


def test_rate_limit_retried_by_the_sdk_is_one_record(tier: Tier) -> None:
    """A 429 then a 200 (the SDK's own retry): one successful record."""

    async def scenario() -> Any:
        tier.fp.script(status=429, retry_after=0.01)
        return _summary(await Runner.run(_agent(tier, "chat", retries=2), PROMPT))

    run = tier.run(scenario)
    assert len(run.requests) == 2
    (rec,) = run.records
    check_call_record(rec, run.requests[1], stream=False)
    assert output_text(rec) == run.value["final_output"]
