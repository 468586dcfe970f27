"""pydantic-ai agents over its OpenAI (chat, responses) and Anthropic models under the patch."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
from pydantic import BaseModel
from pydantic_ai import Agent
from pydantic_ai.messages import ModelResponse
from pydantic_ai.models import anthropic as _anthropic_model
from pydantic_ai.models.anthropic import AnthropicModel
from pydantic_ai.models.openai import OpenAIChatModel, OpenAIResponsesModel
from pydantic_ai.providers.anthropic import AnthropicProvider
from pydantic_ai.providers.openai import OpenAIProvider

from ._checks import check_call_record, check_export, output_text, output_tool_calls, placeholders
from .conftest import Tier

PROMPT = "one two three"
#: A model whose default max_tokens (its maximum output) is over what the anthropic SDK
#: sends without streaming, so pydantic-ai's non-streaming request is refused client-side.
BIG_ANTHROPIC = "claude-sonnet-4-5"
SMALL = {"max_tokens": 256}
#: Whether this release retries streaming when the SDK refuses a non-streaming request
#: (2.x); 1.0.0 streams or not by its own rule and never meets the refusal.
RETRIES_REFUSED = "Streaming is required" in inspect.getsource(_anthropic_model)
NO_REFUSAL = "this pydantic-ai release never sends a request the anthropic SDK refuses"


class Weather(BaseModel):
    city: str
    degrees: int


def _model(tier: Tier, kind: str, retries: int = 0, name: str | None = None) -> Any:
    if kind == "anthropic":
        client = tier.client("anthropic", retries=retries)
        return AnthropicModel(
            name or "claude-3-5-haiku-latest", provider=AnthropicProvider(anthropic_client=client)
        )
    client = tier.client("openai", retries=retries)
    provider = OpenAIProvider(openai_client=client)
    cls: Any = OpenAIChatModel if kind == "chat" else OpenAIResponsesModel
    return cls("gpt-4o-mini", provider=provider)


def _summary(result: Any) -> dict[str, Any]:
    responses = [m for m in result.all_messages() if isinstance(m, ModelResponse)]
    return {
        "output": result.output,
        "parts": [[type(p).__name__ for p in r.parts] for r in responses],
        "ids": [r.provider_response_id for r in responses],
    }


KINDS = ["chat", "responses", "anthropic"]


@pytest.mark.parametrize("kind", KINDS)
def test_text_reply_gives_one_record(tier: Tier, kind: str) -> None:
    """agent.run: one record whose text is the agent's output and whose id is the model's."""

    async def scenario() -> Any:
        agent = Agent(_model(tier, kind), instructions="Be brief.")
        return _summary(await agent.run(PROMPT, model_settings=SMALL))

    run = tier.run(scenario)
    assert run.value["output"] == f"Echo: {PROMPT}"
    (rec,) = run.records
    check_call_record(rec, run.requests[0], stream=False)
    assert output_text(rec) == run.value["output"]
    assert rec["response_id"] == run.value["ids"][0]
    if kind != "responses":
        check_export(run.examples)
        assert len(run.examples) == 1
        assert run.examples[0]["messages"][-1]["content"] == run.value["output"]


@pytest.mark.parametrize("kind", KINDS)
def test_records_hold_no_sdk_placeholders(tier: Tier, kind: str) -> None:
    """`omit` arguments are left out of the record and of the exported example."""

    async def scenario() -> Any:
        agent = Agent(_model(tier, kind), instructions="Be brief.")
        return _summary(await agent.run(PROMPT, model_settings=SMALL))

    run = tier.run(scenario)
    (rec,) = run.records
    assert placeholders(rec) == []
    assert set(rec["input"]) - {"betas"} <= set(run.requests[0].body)
    check_export(run.examples)


@pytest.mark.parametrize("kind", KINDS)
def test_stream_is_recorded_completed(tier: Tier, kind: str) -> None:
    """agent.run_stream: one completed stream record holding the streamed text."""

    async def scenario() -> Any:
        agent = Agent(_model(tier, kind), instructions="Be brief.")
        async with agent.run_stream(PROMPT, model_settings=SMALL) as result:
            deltas = [d async for d in result.stream_text(delta=True, debounce_by=None)]
            output = await result.get_output()
        return {"deltas": deltas, "output": output}

    run = tier.run(scenario)
    assert "".join(run.value["deltas"]) == run.value["output"] == f"Echo: {PROMPT}"
    (rec,) = run.records
    check_call_record(rec, run.requests[0], stream=True)
    assert output_text(rec) == run.value["output"]


@pytest.mark.parametrize("kind", KINDS)
def test_tool_call_round_trip_gives_two_records(tier: Tier, kind: str) -> None:
    """A tool call, then the answer: two records, the first holding the call and its arguments."""

    async def scenario() -> Any:
        agent = Agent(_model(tier, kind), instructions="Be brief.")

        @agent.tool_plain
        def get_weather(city: str) -> str:
            """Tell the weather in a city."""
            return f"sunny in {city}"

        return _summary(await agent.run(PROMPT, model_settings=SMALL))

    run = tier.run(scenario)
    assert run.value["parts"] == [["ToolCallPart"], ["TextPart"]]
    first, second = run.records
    check_call_record(first, run.requests[0], stream=False)
    check_call_record(second, run.requests[1], stream=False)
    assert output_tool_calls(first) == [("get_weather", {"city": "fake"})]
    assert output_text(second) == run.value["output"]
    if kind != "responses":
        check_export(run.examples)
        assert len(run.examples) == 2


@pytest.mark.parametrize("kind", KINDS)
def test_structured_output_tool_is_recorded(tier: Tier, kind: str) -> None:
    """output_type=Model goes through the output tool: the record holds its arguments."""

    async def scenario() -> Any:
        agent = Agent(_model(tier, kind), output_type=Weather)
        return _summary(await agent.run(PROMPT, model_settings=SMALL))

    run = tier.run(scenario)
    assert isinstance(run.value["output"], Weather)
    (rec,) = run.records
    check_call_record(rec, run.requests[0], stream=False)
    ((_name, args),) = output_tool_calls(rec)
    assert Weather.model_validate(args) == run.value["output"]


@pytest.mark.parametrize("kind", KINDS)
def test_server_error_gives_one_error_record(tier: Tier, kind: str) -> None:
    """A 500 the agent raises: one error record with its status, nothing exported."""

    async def scenario() -> Any:
        tier.fp.script(status=500)
        return await Agent(_model(tier, kind)).run(PROMPT, model_settings=SMALL)

    run = tier.run(scenario)
    assert run.patched[0] == "raised"
    (rec,) = run.records
    check_call_record(rec, run.requests[0], stream=False, failed=True)
    assert rec["error"]["status"] == 500
    assert run.examples == []


@pytest.mark.parametrize("kind", ["chat", "anthropic"])
def test_rate_limit_retried_by_the_sdk_is_one_record(tier: Tier, kind: str) -> None:
    """A 429 then a 200 (the SDK's retry): one successful record."""

    async def scenario() -> Any:
        tier.fp.script(status=429, retry_after=0.01)
        agent = Agent(_model(tier, kind, retries=2))
        return _summary(await agent.run(PROMPT, model_settings=SMALL))

    run = tier.run(scenario)
    assert len(run.requests) == 2
    (rec,) = run.records
    check_call_record(rec, run.requests[1], stream=False)
    assert output_text(rec) == run.value["output"]


# -- issue 11 point 3: a request the SDK refuses before sending it --------------


def _big_model_scenario(tier: Tier) -> Any:
    async def scenario() -> Any:
        agent = Agent(_model(tier, "anthropic", name=BIG_ANTHROPIC))
        return _summary(await agent.run(PROMPT))

    return scenario


@pytest.mark.skipif(not RETRIES_REFUSED, reason=NO_REFUSAL)
def test_refused_then_streamed_request_gives_the_same_result(tier: Tier) -> None:
    """What holds today: pydantic-ai's result is unchanged and the streamed request is recorded."""
    run = tier.run(_big_model_scenario(tier))
    assert run.value["output"] == f"Echo: {PROMPT}"
    assert len(run.requests) == 1
    assert run.requests[0].body["stream"] is True
    streamed = [r for r in run.records if r["stream"] is not None]
    assert len(streamed) == 1
    check_call_record(streamed[0], run.requests[0], stream=True)


@pytest.mark.skipif(not RETRIES_REFUSED, reason=NO_REFUSAL)
def test_request_refused_by_the_sdk_leaves_no_error_record(tier: Tier) -> None:
    """One request reached the provider: one record, and no error any statistic would count."""
    run = tier.run(_big_model_scenario(tier))
    assert len(run.requests) == 1
    assert [r["error"] for r in run.records] == [None]
