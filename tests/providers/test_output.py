"""The record's output: built off the caller's thread, same shape streamed or not,
``with_streaming_response`` bodies, and a failing builder that keeps the record."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import anthropic
import openai
import pytest

from logos_shift import _guard, providers
from logos_shift.providers.base import LazyOutput
from logos_shift.providers.openai import build_chat
from logos_shift.testing import FakeProvider, capture_records
from tests.providers.scenarios import AN_MODEL, OA_MODEL

MSGS = [{"role": "user", "content": "hi there"}]
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]


@pytest.fixture(autouse=True)
def _patched() -> Any:
    """Each test runs with both SDKs patched and ends unpatched."""
    providers.unpatch_all()
    providers.patch_all()
    yield
    providers.unpatch_all()
    _guard.FAULTS.clear()


def _oa(fp: FakeProvider) -> openai.OpenAI:
    return openai.OpenAI(base_url=fp.openai_base_url, api_key="k", max_retries=0)


def _an(fp: FakeProvider) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=fp.anthropic_base_url, api_key="k", max_retries=0)


def _no_ids(output: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in output.items() if k != "id"}


def test_chat_output_same_shape_streamed_or_not(fake_provider: FakeProvider) -> None:
    """A non-stream chat record has exactly the output a streamed one assembles."""
    with capture_records() as cap, _oa(fake_provider) as c:
        r = c.chat.completions.create(model=OA_MODEL, messages=MSGS)
        list(c.chat.completions.create(model=OA_MODEL, messages=MSGS, stream=True))
        calls = cap.calls
    plain, streamed = calls[0]["output"], calls[1]["output"]
    assert plain == {
        "id": r.id,
        "object": "chat.completion",
        "model": OA_MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": r.choices[0].message.content},
                "finish_reason": "stop",
            }
        ],
    }
    assert _no_ids(plain) == _no_ids(streamed)
    assert calls[0]["usage"] == {
        "input_tokens": r.usage.prompt_tokens,
        "output_tokens": r.usage.completion_tokens,
    }


def test_chat_tool_calls_same_shape_streamed_or_not(fake_provider: FakeProvider) -> None:
    """Tool calls (name, arguments, id) and the stop reason match between the two forms."""
    with capture_records() as cap, _oa(fake_provider) as c:
        fake_provider.script(tool_calls=[{"name": "get_weather", "arguments": {"city": "Paris"}}])
        r = c.chat.completions.create(model=OA_MODEL, messages=MSGS, tools=TOOLS)
        fake_provider.script(tool_calls=[{"name": "get_weather", "arguments": {"city": "Paris"}}])
        list(c.chat.completions.create(model=OA_MODEL, messages=MSGS, tools=TOOLS, stream=True))
        calls = cap.calls
    plain = calls[0]["output"]["choices"][0]
    streamed = calls[1]["output"]["choices"][0]
    assert plain["finish_reason"] == streamed["finish_reason"] == "tool_calls"
    call = r.choices[0].message.tool_calls[0]
    assert plain["message"]["tool_calls"] == [
        {
            "id": call.id,
            "type": "function",
            "function": {"name": "get_weather", "arguments": call.function.arguments},
        }
    ]
    got = streamed["message"]["tool_calls"][0]["function"]
    assert got == plain["message"]["tool_calls"][0]["function"]


def test_anthropic_output_same_shape_streamed_or_not(fake_provider: FakeProvider) -> None:
    """A non-stream Message record has exactly the output a streamed one assembles."""
    with capture_records() as cap, _an(fake_provider) as c:
        m = c.messages.create(model=AN_MODEL, max_tokens=50, messages=MSGS)
        list(c.messages.create(model=AN_MODEL, max_tokens=50, messages=MSGS, stream=True))
        calls = cap.calls
    plain, streamed = calls[0]["output"], calls[1]["output"]
    assert plain["content"][0]["text"] == m.content[0].text
    assert plain["stop_reason"] == m.stop_reason
    assert _no_ids(plain) == _no_ids(streamed)


def test_output_is_built_lazily_from_the_response(fake_provider: FakeProvider) -> None:
    """The caller's thread hands over a LazyOutput holding the response, not a dump."""
    seen: list[Any] = []

    def redact(rec: dict[str, Any]) -> dict[str, Any]:
        seen.append(rec["output"])
        return rec

    with capture_records(redact=redact) as cap, _oa(fake_provider) as c:
        r = c.chat.completions.create(model=OA_MODEL, messages=MSGS)
        calls = cap.calls
    assert isinstance(seen[0], LazyOutput)
    assert seen[0]["choices"][0]["message"]["content"] == r.choices[0].message.content
    assert calls[0]["output"] == build_chat(r)


def test_failing_builder_keeps_the_record(fake_provider: FakeProvider) -> None:
    """A builder that raises falls back to the whole response; the record is not lost."""
    _guard.FAULTS.add("build_output")
    with capture_records() as cap, _oa(fake_provider) as c:
        r = c.chat.completions.create(model=OA_MODEL, messages=MSGS)
        calls = cap.calls
    assert len(calls) == 1
    out = calls[0]["output"]
    assert out["choices"][0]["message"]["content"] == r.choices[0].message.content
    assert out["usage"]["prompt_tokens"] == r.usage.prompt_tokens  # the full response
    assert calls[0]["response_id"] == r.id


def test_streaming_response_parse_gives_output(fake_provider: FakeProvider) -> None:
    """with_streaming_response + parse(): the record carries the parsed output and usage."""
    with capture_records() as cap, _oa(fake_provider) as c:
        with c.chat.completions.with_streaming_response.create(
            model=OA_MODEL, messages=MSGS
        ) as resp:
            parsed = resp.parse()
        calls = cap.calls
    assert len(calls) == 1
    rec = calls[0]
    assert rec["output"] == build_chat(parsed)
    assert rec["response_id"] == parsed.id
    assert rec["served_model"] == parsed.model
    assert rec["usage"]["input_tokens"] == parsed.usage.prompt_tokens


def test_streaming_response_read_gives_output(fake_provider: FakeProvider) -> None:
    """with_streaming_response + read()/json(): output from the body the caller read."""
    with capture_records() as cap, _an(fake_provider) as c:
        with c.messages.with_streaming_response.create(
            model=AN_MODEL,
            max_tokens=50,
            messages=MSGS,
        ) as resp:
            body = resp.json()
        calls = cap.calls
    rec = calls[0]
    assert rec["output"]["content"][0]["text"] == body["content"][0]["text"]
    assert rec["output"]["stop_reason"] == body["stop_reason"]
    assert rec["response_id"] == body["id"]
    assert rec["usage"] == {
        "input_tokens": body["usage"]["input_tokens"],
        "output_tokens": body["usage"]["output_tokens"],
    }


def test_streaming_response_unread_body(fake_provider: FakeProvider) -> None:
    """A body the caller never read is not read for the record: no output, one record."""
    with capture_records() as cap, _oa(fake_provider) as c:
        with c.chat.completions.with_streaming_response.create(model=OA_MODEL, messages=MSGS):
            pass
        calls = cap.calls
    assert len(calls) == 1
    assert calls[0]["output"] is None
    assert calls[0]["error"] is None
    assert calls[0]["latency_ms"] >= 0


def test_streaming_response_never_closed_is_recorded_on_gc(fake_provider: FakeProvider) -> None:
    """An entered, never-closed streaming response is recorded when it is collected."""
    with capture_records() as cap, _oa(fake_provider) as c:
        mgr = c.chat.completions.with_streaming_response.create(model=OA_MODEL, messages=MSGS)
        resp = mgr.__enter__()
        resp.read()
        del resp, mgr
        gc.collect()
        calls = cap.calls
    assert len(calls) == 1
    assert calls[0]["output"]["choices"][0]["message"]["content"].startswith("Echo: ")


def test_async_streaming_response_parse(fake_provider: FakeProvider) -> None:
    """The async form records the parsed output when the block ends."""

    async def go() -> tuple[Any, list[dict[str, Any]]]:
        with capture_records() as cap:
            async with (
                openai.AsyncOpenAI(
                    base_url=fake_provider.openai_base_url, api_key="k", max_retries=0
                ) as c,
                c.chat.completions.with_streaming_response.create(
                    model=OA_MODEL, messages=MSGS
                ) as resp,
            ):
                parsed = await resp.parse()
            return parsed, cap.calls

    parsed, calls = asyncio.run(go())
    assert len(calls) == 1
    assert calls[0]["output"] == build_chat(parsed)


def test_streaming_response_of_a_stream_parsed_by_the_caller(fake_provider: FakeProvider) -> None:
    """stream=True under with_streaming_response: the Stream from parse() is captured as one."""
    with capture_records() as cap, _oa(fake_provider) as c:
        with c.chat.completions.with_streaming_response.create(
            model=OA_MODEL, messages=MSGS, stream=True
        ) as resp:
            chunks = list(resp.parse())
        calls = cap.calls
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks)
    assert text.startswith("Echo: ")
    (rec,) = calls
    assert rec["stream"]["status"] == "completed"
    assert rec["stream"]["chunks"] >= len(chunks)
    assert rec["output"]["choices"][0]["message"]["content"] == text
    assert rec["response_id"] == chunks[0].id
    assert rec["error"] is None
