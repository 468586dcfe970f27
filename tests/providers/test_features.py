"""Per-endpoint capture: responses, embeddings, parse, tool calls, beta, usage, retries, routing."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

import anthropic
import openai
import pydantic
import pytest

import logos_shift
from logos_shift import _patching
from logos_shift.testing import FakeProvider, capture_records

MSG = [{"role": "user", "content": "hello world"}]


def _oa(fp: FakeProvider, **kw: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=fp.openai_base_url, api_key="test", **kw)


def _an(fp: FakeProvider, **kw: Any) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=fp.anthropic_base_url, api_key="test", **kw)


def test_responses_create_and_stream(fp: FakeProvider) -> None:
    """responses.create, plain and streamed, records the final Response with id, model, usage."""
    _patching.patch("openai")
    with capture_records() as cap, _oa(fp) as client:
        r = client.responses.create(model="gpt-4o-mini", input="hello world")
        events = list(client.responses.create(model="gpt-4o-mini", input="hello world",
                                              stream=True))  # fmt: skip
        plain, streamed = cap.calls
    assert plain["source"] == "openai.responses"
    assert plain["response_id"] == r.id
    assert plain["output"]["output"][0]["content"][0]["text"] == r.output_text
    assert plain["usage"]["input_tokens"] == r.usage.input_tokens
    assert streamed["stream"] == {"status": "completed", "chunks": len(events)}
    assert streamed["served_model"] == "gpt-4o-mini"
    assert streamed["output"]["output"][0]["content"][0]["text"] == "Echo: hello world"
    assert streamed["usage"]["output_tokens"] > 0


def test_embeddings(fp: FakeProvider) -> None:
    """embeddings.create records the model and token usage, sync and async."""
    _patching.patch("openai")

    async def go() -> None:
        async with openai.AsyncOpenAI(base_url=fp.openai_base_url, api_key="t") as ac:
            await ac.embeddings.create(model="text-embedding-3-small", input="a b c")

    with capture_records() as cap, _oa(fp) as client:
        client.embeddings.create(model="text-embedding-3-small", input=["a b", "c"])
        asyncio.run(go())
        sync, asy = cap.calls
    for rec in (sync, asy):
        assert rec["source"] == "openai.embeddings"
        assert rec["served_model"] == "text-embedding-3-small"
        assert rec["usage"]["input_tokens"] == 3


class Answer(pydantic.BaseModel):
    """A structured output for parse()."""

    text: str


def test_chat_parse(fp: FakeProvider) -> None:
    """chat.completions.parse (beta in older 1.x) is captured although it bypasses create."""
    _patching.patch("openai")
    fp.script(text=json.dumps({"text": "ok"}))
    with capture_records() as cap, _oa(fp) as client:
        res = client.chat.completions
        parse = res.parse if hasattr(res, "parse") else client.beta.chat.completions.parse
        out = parse(model="gpt-4o-mini", messages=MSG, response_format=Answer)
        (rec,) = cap.calls
    assert out.choices[0].message.parsed == Answer(text="ok")
    assert rec["source"] == "openai.chat.completions"
    assert rec["response_id"] == out.id
    assert rec["input"]["response_format"] is not None


def test_streamed_tool_calls_assembled_by_index(fp: FakeProvider) -> None:
    """Parallel streamed tool calls are rebuilt by index with complete JSON arguments."""
    _patching.patch("openai")
    calls = [{"name": "get_weather", "arguments": {"city": "Paris"}},
             {"name": "get_time", "arguments": {"tz": "CET"}}]  # fmt: skip
    fp.script(tool_calls=calls)
    with capture_records() as cap, _oa(fp) as client:
        for _ in client.chat.completions.create(model="gpt-4o-mini", messages=MSG, stream=True):
            pass
        (rec,) = cap.calls
    choice = rec["output"]["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    got = [(t["function"]["name"], json.loads(t["function"]["arguments"]))
           for t in choice["message"]["tool_calls"]]  # fmt: skip
    assert got == [("get_weather", {"city": "Paris"}), ("get_time", {"tz": "CET"})]


def test_anthropic_streamed_tool_use_and_cumulative_usage(fp: FakeProvider) -> None:
    """Anthropic tool_use input is assembled from JSON deltas; output tokens are not summed."""
    _patching.patch("anthropic")
    fp.script(tool_calls=[{"name": "lookup", "arguments": {"q": "x"}}])
    with capture_records() as cap, _an(fp) as client:
        with client.messages.stream(model="claude-x", max_tokens=20, messages=MSG) as s:
            final = s.get_final_message()
        (rec,) = cap.calls
    block = rec["output"]["content"][-1]
    assert block["type"] == "tool_use"
    assert block["input"] == {"q": "x"}
    assert rec["output"]["stop_reason"] == final.stop_reason == "tool_use"
    assert rec["usage"]["output_tokens"] == final.usage.output_tokens
    assert rec["usage"]["input_tokens"] == final.usage.input_tokens


def test_anthropic_beta_messages(fp: FakeProvider) -> None:
    """The beta messages classes are captured with their own source."""
    _patching.patch("anthropic")
    with capture_records() as cap, _an(fp) as client:
        client.beta.messages.create(model="claude-x", max_tokens=20, messages=MSG)
        with client.beta.messages.stream(model="claude-x", max_tokens=20, messages=MSG) as s:
            s.until_done()
        plain, streamed = cap.calls
    assert plain["source"] == streamed["source"] == "anthropic.beta.messages"
    assert streamed["stream"]["status"] == "completed"
    assert streamed["output"]["content"][0]["text"] == "Echo: hello world"


@pytest.mark.parametrize("otel", [True, False])
def test_anthropic_native_otel_on_or_off(fp: FakeProvider, otel: bool) -> None:
    """anthropic 2.x's own OpenTelemetry spans do not change what is captured."""
    _patching.patch("anthropic")
    kw: dict[str, Any] = {}
    if "open_telemetry" in anthropic.Anthropic.__init__.__code__.co_varnames:
        kw["open_telemetry"] = None if otel else False
    elif otel:
        pytest.skip("this anthropic version has no native OpenTelemetry")
    with capture_records() as cap, _an(fp, **kw) as client:
        for _ in client.messages.create(model="claude-x", max_tokens=9, messages=MSG, stream=True):
            pass
        (rec,) = cap.calls
    assert rec["stream"]["status"] == "completed"
    assert rec["output"]["content"][0]["text"] == "Echo: hello world"


def test_include_usage_not_injected_by_default(fp: FakeProvider) -> None:
    """Without the option the request is sent exactly as the user wrote it."""
    _patching.patch("openai")
    with capture_records(), _oa(fp) as client:
        list(client.chat.completions.create(model="gpt-4o-mini", messages=MSG, stream=True))
    assert "stream_options" not in fp.requests[-1].body


def test_include_usage_injected_and_hidden(fp: FakeProvider) -> None:
    """inject_stream_usage asks for usage, records it, and hides the usage-only chunk."""
    _patching.patch("openai")
    with capture_records(inject_stream_usage=True) as cap, _oa(fp) as client:
        chunks = list(
            client.chat.completions.create(model="gpt-4o-mini", messages=MSG, stream=True)
        )
        (rec,) = cap.calls
    assert fp.requests[-1].body["stream_options"] == {"include_usage": True}
    assert all(c.choices for c in chunks)
    assert rec["usage"]["input_tokens"] > 0
    assert rec["stream"]["chunks"] == len(chunks)


def test_sdk_retries_give_one_record(fp: FakeProvider) -> None:
    """A 429 the SDK retries, then a 200, is one record of the successful call."""
    _patching.patch("openai")
    fp.script(status=429, retry_after=0.01)
    with capture_records() as cap, _oa(fp) as client:
        client.chat.completions.create(model="gpt-4o-mini", messages=MSG)
        (rec,) = cap.calls
    assert len(fp.requests) == 2
    assert rec["error"] is None


def test_logos_id_tag_and_feedback_by_provider_id(fp: FakeProvider) -> None:
    """Responses carry logos_shift_id outside model_dump(); feedback by the provider id works."""
    _patching.patch("openai")
    with capture_records() as cap, _oa(fp) as client:
        r = client.chat.completions.create(model="gpt-4o-mini", messages=MSG)
        logos_shift.provide_feedback(r.id, "success")
        (rec,) = cap.calls
        (fb,) = cap.feedback
    assert r.logos_shift_id == rec["id"] == logos_shift.last_call_id()
    assert "logos_shift_id" not in r.model_dump()
    assert "logos_shift_id" not in r.model_dump_json()
    assert fb["target"] == rec["response_id"] == r.id


@dataclass
class Decision:
    """A stand-in router decision (the hook's duck-typed contract)."""

    model: str | None
    route: str = "r1"
    variant: str = "v1"
    arm: str = "variant"
    fallback: bool = False
    control_model: str | None = None
    param_overrides: dict[str, Any] = field(default_factory=dict)


def test_route_hook_substitutes_model(fp: FakeProvider) -> None:
    """The hook's model and overrides are sent; the record has requested and served models."""
    _patching.patch("openai")
    seen: list[Any] = []

    def hook(info: Any) -> Decision:
        seen.append((info.provider, info.source, info.model))
        return Decision("gpt-4o", param_overrides={"temperature": 0.1})

    _patching.ROUTE_HOOK = hook
    with capture_records() as cap, _oa(fp) as client:
        r = client.chat.completions.create(model="gpt-4o-mini", messages=MSG)
        (rec,) = cap.calls
    assert seen == [("openai", "openai.chat.completions", "gpt-4o-mini")]
    assert fp.requests[-1].body["model"] == "gpt-4o" == r.model
    assert fp.requests[-1].body["temperature"] == 0.1
    assert (rec["requested_model"], rec["served_model"]) == ("gpt-4o-mini", "gpt-4o")
    assert (rec["route"], rec["variant"], rec["fallback"]) == ("r1", "v1", False)
    assert rec["input"]["model"] == "gpt-4o-mini"


@pytest.mark.parametrize("stream", [False, True])
def test_fallback_to_control_on_variant_failure(fp: FakeProvider, stream: bool) -> None:
    """A variant 500 is retried once on the control model; the record keeps the variant's error."""
    _patching.patch("openai")
    fp.fail_model("ft-broken", status=500)
    _patching.ROUTE_HOOK = lambda info: Decision("ft-broken", fallback=True)
    with capture_records() as cap, _oa(fp, max_retries=0) as client:
        r = client.chat.completions.create(model="gpt-4o-mini", messages=MSG, stream=stream)
        text = "".join(c.choices[0].delta.content or "" for c in r) if stream else \
            r.choices[0].message.content  # fmt: skip
        (rec,) = cap.calls
    assert text == "Echo: hello world"
    assert [q.model for q in fp.requests] == ["ft-broken", "gpt-4o-mini"]
    assert rec["fallback"] is True
    assert rec["error"]["status"] == 500
    assert rec["served_model"] == "gpt-4o-mini"


def test_no_fallback_on_bad_request(fp: FakeProvider) -> None:
    """A 400 from the variant is raised as is, without a second request."""
    _patching.patch("openai")
    fp.fail_model("ft-x", status=400)
    _patching.ROUTE_HOOK = lambda info: Decision("ft-x", fallback=True)
    with capture_records() as cap, _oa(fp, max_retries=0) as client:
        with pytest.raises(openai.BadRequestError):
            client.chat.completions.create(model="gpt-4o-mini", messages=MSG)
        (rec,) = cap.calls
    assert len(fp.requests) == 1
    assert rec["fallback"] is False
    assert rec["error"]["status"] == 400
