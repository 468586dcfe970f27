"""LangChain's ChatOpenAI (its own clients, as users build it) under the patch."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_openai import ChatOpenAI

from . import _langchain as lc
from ._checks import check_call_record, check_export, output_text, output_tool_calls, placeholders
from .conftest import Tier


def _llm(tier: Tier, retries: int = 0, **kw: Any) -> ChatOpenAI:
    # Clients of this run: LangChain's own defaults are cached per base URL for the
    # process, and an async one cannot outlive the event loop of the plain run.
    sync, aio = (
        tier.client("openai", is_async=False, retries=retries),
        tier.client("openai", retries=retries),
    )
    return ChatOpenAI(
        model="gpt-4o-mini",
        api_key="test",  # type: ignore[arg-type]
        max_retries=retries,
        root_client=sync,
        client=sync.chat.completions,
        root_async_client=aio,
        async_client=aio.chat.completions,
        **kw,
    )


@pytest.mark.parametrize("how", ["invoke", "ainvoke"])
def test_text_reply_gives_one_record(tier: Tier, how: str) -> None:
    """invoke / ainvoke: one record, its text and id those of the AIMessage; exported."""
    run = tier.run(lambda: getattr(lc, how)(_llm(tier)))
    assert run.value["content"] == f"Echo: {lc.PROMPT}"
    (rec,) = run.records
    check_call_record(rec, run.requests[0], stream=False)
    assert output_text(rec) == run.value["content"]
    assert rec["response_id"] == run.value["id"]
    check_export(run.examples)
    assert run.examples[0]["messages"] == [
        {"role": "user", "content": lc.PROMPT},
        {"role": "assistant", "content": run.value["content"]},
    ]


@pytest.mark.parametrize("how", ["stream", "astream"])
@pytest.mark.parametrize("usage", [False, True])
def test_streamed_tokens_give_one_completed_record(tier: Tier, how: str, usage: bool) -> None:
    """stream / astream (with and without stream_usage): one completed record of the tokens."""
    run = tier.run(lambda: getattr(lc, how)(_llm(tier, stream_usage=usage)))
    assert "".join(run.value["tokens"]) == run.value["content"] == f"Echo: {lc.PROMPT}"
    (rec,) = run.records
    check_call_record(rec, run.requests[0], stream=True)
    assert output_text(rec) == run.value["content"]
    assert (rec["usage"] is not None) == usage
    check_export(run.examples)


def test_tool_call_is_recorded_with_its_arguments(tier: Tier) -> None:
    """bind_tools: the record's tool call equals the AIMessage's, and exports with its tools."""
    run = tier.run(lambda: lc.tools(_llm(tier)))
    assert run.value["tool_calls"] == [("get_weather", {"city": "fake"})]
    (rec,) = run.records
    check_call_record(rec, run.requests[0], stream=False)
    assert output_tool_calls(rec) == run.value["tool_calls"]
    check_export(run.examples)
    (ex,) = run.examples
    assert ex["tools"][0]["function"]["name"] == "get_weather"


def test_structured_output_is_recorded_as_the_parsed_json(tier: Tier) -> None:
    """with_structured_output: the recorded answer is the JSON LangChain parsed."""
    run = tier.run(lambda: lc.structured(_llm(tier)))
    assert isinstance(run.value, lc.Weather)
    (rec,) = run.records
    check_call_record(rec, run.requests[0], stream=False)
    assert lc.Weather.model_validate_json(output_text(rec) or "") == run.value
    check_export(run.examples)


def test_server_error_gives_one_error_record(tier: Tier) -> None:
    """A 500: LangChain raises it; one error record with its status; nothing exported."""

    def scenario() -> Any:
        tier.fp.script(status=500)
        return lc.invoke(_llm(tier))

    run = tier.run(scenario)
    assert run.patched[0] == "raised"
    assert run.patched[1][1] == 500
    (rec,) = run.records
    check_call_record(rec, run.requests[0], stream=False, failed=True)
    assert run.examples == []


def test_rate_limit_retried_by_the_sdk_is_one_record(tier: Tier) -> None:
    """429 then 200 through the SDK's retry (LangChain's max_retries): one record."""

    def scenario() -> Any:
        tier.fp.script(status=429, retry_after=0.01)
        return lc.invoke(_llm(tier, retries=2))

    run = tier.run(scenario)
    assert len(run.requests) == 2
    (rec,) = run.records
    check_call_record(rec, run.requests[1], stream=False)
    assert output_text(rec) == run.value["content"]


def test_mid_stream_error_is_recorded_as_a_stream_error(tier: Tier) -> None:
    """The provider's error event mid-stream: LangChain raises; the record says error."""

    def scenario() -> Any:
        tier.fp.script(error_after_chunks=3)
        return lc.stream(_llm(tier))

    run = tier.run(scenario)
    assert run.patched[0] == "raised"
    (rec,) = run.records
    check_call_record(rec, run.requests[0], stream=True, failed=True)
    assert rec["stream"]["chunks"] == 3


def test_cancelled_ainvoke_is_recorded(tier: Tier) -> None:
    """ainvoke cancelled by asyncio.wait_for: a record with error type CancelledError."""

    def scenario() -> Any:
        tier.fp.script(latency=2.0)
        return lc.cancelled(_llm(tier))

    run = tier.run(scenario)
    assert run.value == "timed out"
    (rec,) = run.records
    assert rec["error"] is not None
    assert rec["error"]["type"] == "CancelledError"
    assert not placeholders(rec)


def test_cancelled_astream_is_recorded(tier: Tier) -> None:
    """astream cancelled after a few tokens: the stream record ends cancelled, not completed."""

    def scenario() -> Any:
        tier.fp.script(chunk_delay=0.1, chunks=20)
        return lc.cancelled_stream(_llm(tier))

    run = tier.run(scenario, compare=False)
    assert run.value[-1] == "<timed out>"
    (rec,) = run.records
    cancelled = rec["stream"]["status"] == "cancelled" or (
        rec["error"] is not None and rec["error"]["type"] == "CancelledError"
    )
    assert cancelled, (rec["stream"], rec["error"])
    assert 0 < rec["stream"]["chunks"] < 22
