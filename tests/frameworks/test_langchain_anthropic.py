"""LangChain's ChatAnthropic under the patch."""

from __future__ import annotations

import warnings
from typing import Any

import pytest
from anthropic.resources.messages import messages as _anthropic_messages
from langchain_anthropic import ChatAnthropic

from . import _langchain as lc
from ._checks import check_call_record, check_export, output_text, output_tool_calls, placeholders
from .conftest import Tier

MODEL = "claude-3-5-haiku-latest"


def _llm(tier: Tier, retries: int = 0, model: str = MODEL, **kw: Any) -> ChatAnthropic:
    llm = ChatAnthropic(
        model_name=model,
        api_key="test",  # type: ignore[arg-type]
        base_url=tier.fp.anthropic_base_url,
        max_retries=retries,
        max_tokens=256,  # type: ignore[call-arg]
        **kw,
    )
    # Clients of this run (closed with it): ChatAnthropic's own are cached per base URL
    # for the process, and an async one cannot outlive the plain run's event loop.
    llm.__dict__["_client"] = tier.client("anthropic", is_async=False, retries=retries)
    llm.__dict__["_async_client"] = tier.client("anthropic", retries=retries)
    return llm


@pytest.mark.parametrize("how", ["invoke", "ainvoke"])
def test_text_reply_gives_one_record(tier: Tier, how: str) -> None:
    """invoke / ainvoke: one record, its text and id those of the AIMessage; exported."""
    run = tier.run(lambda: getattr(lc, how)(_llm(tier)))
    assert run.value["content"] == f"Echo: {lc.PROMPT}"
    (rec,) = run.records
    check_call_record(rec, run.requests[0], stream=False)
    assert rec["source"].startswith("anthropic.")
    assert output_text(rec) == run.value["content"]
    assert rec["response_id"] == run.value["id"]
    check_export(run.examples)
    assert run.examples[0]["messages"][-1] == {"role": "assistant", "content": run.value["content"]}


@pytest.mark.parametrize("how", ["stream", "astream"])
def test_streamed_tokens_give_one_completed_record(tier: Tier, how: str) -> None:
    """stream / astream: one completed stream record holding the tokens, with usage."""
    run = tier.run(lambda: getattr(lc, how)(_llm(tier)))
    text = "".join(t for t in run.value["tokens"] if isinstance(t, str))
    assert text == f"Echo: {lc.PROMPT}"
    (rec,) = run.records
    check_call_record(rec, run.requests[0], stream=True)
    assert output_text(rec) == text
    assert rec["usage"]["output_tokens"] == len(text.split())
    check_export(run.examples)


def test_tool_call_is_recorded_with_its_arguments(tier: Tier) -> None:
    """bind_tools: the record's tool_use equals the AIMessage's tool call; exported with tools."""
    run = tier.run(lambda: lc.tools(_llm(tier)))
    assert run.value["tool_calls"] == [("get_weather", {"city": "fake"})]
    (rec,) = run.records
    check_call_record(rec, run.requests[0], stream=False)
    assert output_tool_calls(rec) == run.value["tool_calls"]
    check_export(run.examples)
    (ex,) = run.examples
    assert ex["messages"][-1]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert ex["tools"][0]["function"]["name"] == "get_weather"


def test_structured_output_is_recorded(tier: Tier) -> None:
    """with_structured_output: the record holds the tool input LangChain turned into the object."""
    run = tier.run(lambda: lc.structured(_llm(tier)))
    assert isinstance(run.value, lc.Weather)
    (rec,) = run.records
    check_call_record(rec, run.requests[0], stream=False)
    calls = output_tool_calls(rec)
    parsed = lc.Weather.model_validate(calls[0][1]) if calls else None
    assert (
        parsed == run.value or lc.Weather.model_validate_json(output_text(rec) or "{}") == run.value
    )


def test_server_error_gives_one_error_record(tier: Tier) -> None:
    """A 500 (after no retries): one error record with its status; nothing exported."""

    def scenario() -> Any:
        tier.fp.script(status=500)
        return lc.invoke(_llm(tier))

    run = tier.run(scenario)
    assert run.patched[0] == "raised"
    assert run.patched[1][1] == 500
    (rec,) = run.records
    check_call_record(rec, run.requests[0], stream=False, failed=True)
    assert run.examples == []


def test_overloaded_then_ok_is_one_record(tier: Tier) -> None:
    """529 then 200 through the SDK's retry: one successful record."""

    def scenario() -> Any:
        tier.fp.script(status=529, retry_after=0.01)
        return lc.invoke(_llm(tier, retries=2))

    run = tier.run(scenario)
    assert len(run.requests) == 2
    (rec,) = run.records
    check_call_record(rec, run.requests[1], stream=False)


def test_mid_stream_error_is_recorded_as_a_stream_error(tier: Tier) -> None:
    """Anthropic's overloaded event mid-stream: LangChain raises; the record says error."""

    def scenario() -> Any:
        tier.fp.script(error_after_chunks=4)
        return lc.stream(_llm(tier))

    run = tier.run(scenario)
    assert run.patched[0] == "raised"
    (rec,) = run.records
    check_call_record(rec, run.requests[0], stream=True, failed=True)


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


def _deprecated_model() -> str:
    return next(iter(_anthropic_messages.DEPRECATED_MODELS))


def test_deprecated_model_warning_points_where_it_does_unpatched(tier: Tier) -> None:
    """The SDK's deprecation warning names the same file and line with the patch as without."""

    def scenario() -> Any:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            lc.invoke(_llm(tier, model=_deprecated_model()))
        return [
            (w.category.__name__, w.filename, w.lineno)
            for w in caught
            if issubclass(w.category, DeprecationWarning) and "deprecated" in str(w.message)
        ]

    run = tier.run(scenario)
    assert run.value, "the SDK gave no deprecation warning"
    assert "logos_shift" not in run.value[0][1]
