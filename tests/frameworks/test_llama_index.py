"""llama-index's OpenAI LLM (chat, complete, streams, tools, structured predict) under the patch."""

from __future__ import annotations

from typing import Any

import pytest
from llama_index.core.base.llms.types import ChatMessage
from llama_index.core.prompts import PromptTemplate
from llama_index.core.tools import FunctionTool
from llama_index.llms.openai import OpenAI
from pydantic import BaseModel

from ._checks import check_call_record, check_export, output_text, output_tool_calls
from .conftest import Tier

PROMPT = "one two three"


class Weather(BaseModel):
    """The weather in a city."""

    city: str
    degrees: int


def get_weather(city: str) -> str:
    """Tell the weather in a city."""
    return f"sunny in {city}"


def _llm(tier: Tier, retries: int = 0) -> OpenAI:
    # A new LLM per run: it caches its SDK clients, and an async one cannot outlive
    # the event loop of the plain run.  The SDK clients it builds are closed with it.
    llm = OpenAI(
        model="gpt-4o-mini", api_base=tier.fp.openai_base_url, api_key="test", max_retries=retries
    )
    tier.track(llm._get_client())
    tier.track(llm._get_aclient())
    return llm


def _chat(resp: Any) -> dict[str, Any]:
    return {"content": resp.message.content, "id": getattr(resp.raw, "id", None)}


def test_chat_gives_one_record(tier: Tier) -> None:
    """llm.chat: one record with the reply's text and id; exported."""
    run = tier.run(lambda: _chat(_llm(tier).chat([ChatMessage(role="user", content=PROMPT)])))
    assert run.value["content"] == f"Echo: {PROMPT}"
    (rec,) = run.records
    check_call_record(rec, run.requests[0], stream=False)
    assert output_text(rec) == run.value["content"]
    assert rec["response_id"] == run.value["id"]
    check_export(run.examples)


def test_complete_gives_one_record(tier: Tier) -> None:
    """llm.complete (a chat model behind a completion API): one chat record."""
    run = tier.run(lambda: _llm(tier).complete(PROMPT).text)
    assert run.value == f"Echo: {PROMPT}"
    (rec,) = run.records
    check_call_record(rec, run.requests[0], stream=False)
    assert output_text(rec) == run.value


def test_stream_chat_gives_one_completed_record(tier: Tier) -> None:
    """stream_chat: the deltas, and one completed stream record of their sum."""

    def scenario() -> Any:
        parts = list(_llm(tier).stream_chat([ChatMessage(role="user", content=PROMPT)]))
        return {"deltas": [p.delta for p in parts], "content": parts[-1].message.content}

    run = tier.run(scenario)
    assert "".join(run.value["deltas"]) == run.value["content"] == f"Echo: {PROMPT}"
    (rec,) = run.records
    check_call_record(rec, run.requests[0], stream=True)
    assert output_text(rec) == run.value["content"]
    check_export(run.examples)


def test_astream_chat_gives_one_completed_record(tier: Tier) -> None:
    """astream_chat: the same, on the async client."""

    async def scenario() -> Any:
        gen = await _llm(tier).astream_chat([ChatMessage(role="user", content=PROMPT)])
        parts = [p async for p in gen]
        return {"deltas": [p.delta for p in parts], "content": parts[-1].message.content}

    run = tier.run(scenario)
    (rec,) = run.records
    check_call_record(rec, run.requests[0], stream=True)
    assert output_text(rec) == run.value["content"] == f"Echo: {PROMPT}"


def test_tool_call_is_recorded_with_its_arguments(tier: Tier) -> None:
    """chat_with_tools: the record's tool call is the one llama-index extracted."""

    def scenario() -> Any:
        llm = _llm(tier)
        resp = llm.chat_with_tools([FunctionTool.from_defaults(fn=get_weather)], user_msg=PROMPT)
        calls = llm.get_tool_calls_from_response(resp, error_on_no_tool_call=True)
        return [(c.tool_name, c.tool_kwargs) for c in calls]

    run = tier.run(scenario)
    assert run.value == [("get_weather", {"city": "fake"})]
    (rec,) = run.records
    check_call_record(rec, run.requests[0], stream=False)
    assert output_tool_calls(rec) == run.value
    check_export(run.examples)


def test_structured_predict_is_recorded(tier: Tier) -> None:
    """structured_predict: one record whose answer is what llama-index parsed."""

    def scenario() -> Any:
        return _llm(tier).structured_predict(
            Weather, PromptTemplate("Weather in {city}?"), city="x"
        )

    run = tier.run(scenario)
    assert isinstance(run.value, Weather)
    (rec,) = run.records
    check_call_record(rec, run.requests[0], stream=False)
    calls = output_tool_calls(rec)
    answer = calls[0][1] if calls else Weather.model_validate_json(output_text(rec) or "{}")
    assert Weather.model_validate(answer) == run.value
    check_export(run.examples)


def test_server_error_gives_one_error_record(tier: Tier) -> None:
    """A 500: llama-index raises; one error record; nothing exported."""

    def scenario() -> Any:
        tier.fp.script(status=500)
        return _llm(tier).complete(PROMPT).text

    run = tier.run(scenario)
    assert run.patched[0] == "raised"
    (rec,) = run.records
    check_call_record(rec, run.requests[0], stream=False, failed=True)
    assert run.examples == []


@pytest.mark.parametrize("status", [429, 500])
def test_retried_error_is_one_record(tier: Tier, status: int) -> None:
    """An error, then a 200 through the SDK's retry: one successful record."""

    def scenario() -> Any:
        tier.fp.script(status=status, retry_after=0.01)
        return _llm(tier, retries=2).complete(PROMPT).text

    run = tier.run(scenario)
    assert len(run.requests) == 2
    (rec,) = run.records
    check_call_record(rec, run.requests[1], stream=False)
    assert output_text(rec) == run.value
