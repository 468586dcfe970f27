"""OpenAI chat completions served by the fake provider, through the real openai SDK."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import openai
import pytest

from logos_shift.testing import FakeProvider
from tests.testing.clients import (
    USER,
    WEATHER_TOOL,
    City,
    aoai,
    oai,
)


def test_chat_json_echoes_model_and_counts_words(fake_provider: FakeProvider) -> None:
    """A chat completion echoes the last user message and the model, with word-count usage."""
    with oai(fake_provider) as client:
        reply = client.chat.completions.create(model="gpt-x", messages=USER)
    assert reply.id.startswith("chatcmpl-")
    assert reply.model == "gpt-x"
    assert reply.choices[0].message.content == "Echo: what is the weather"
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (4, 5)
    assert reply.usage.total_tokens == 9
    (req,) = fake_provider.requests
    assert (req.method, req.path, req.model) == ("POST", "/v1/chat/completions", "gpt-x")
    assert req.headers["authorization"] == "Bearer test"
    assert json.loads(req.raw) == req.body


def test_chat_n_choices(fake_provider: FakeProvider) -> None:
    """The ``n`` parameter yields that many identical choices and scales completion usage."""
    with oai(fake_provider) as client:
        reply = client.chat.completions.create(model="m", messages=USER, n=3)
    assert [c.index for c in reply.choices] == [0, 1, 2]
    assert reply.usage is not None
    assert reply.usage.completion_tokens == 15


def test_chat_stream_text_chunks_and_include_usage(fake_provider: FakeProvider) -> None:
    """A streamed reply splits the text into ``chunks`` deltas and ends with a usage-only chunk."""
    fake_provider.script(text="one two three four", chunks=4)
    with oai(fake_provider) as client:
        stream = client.chat.completions.create(
            model="m", messages=USER, stream=True, stream_options={"include_usage": True}
        )
        chunks = list(stream)
    ids = {c.id for c in chunks}
    assert len(ids) == 1
    assert ids.pop().startswith("chatcmpl-")
    contents = [c.choices[0].delta.content for c in chunks if c.choices]
    assert contents[0] == ""  # the role chunk
    assert len(contents) == 1 + 4 + 1
    assert "".join(contents[1:5]) == "one two three four"
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert all(c.usage is None for c in chunks[:-1])
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 4


def test_chat_stream_without_include_usage_has_no_usage_chunk(fake_provider: FakeProvider) -> None:
    """Without ``stream_options.include_usage`` no chunk carries usage or has empty choices."""
    with oai(fake_provider) as client:
        chunks = list(client.chat.completions.create(model="m", messages=USER, stream=True))
    assert len(chunks) == 1 + 5 + 1  # role, default 5 text pieces, finish
    assert all(c.choices and c.usage is None for c in chunks)


def test_provider_chunks_setting_controls_stream_length() -> None:
    """``FakeProvider(chunks=50)`` streams exactly 50 content deltas, for benchmarks."""
    with FakeProvider(chunks=50) as fp, oai(fp) as client:
        fp.script(text="x" * 200)
        chunks = list(client.chat.completions.create(model="m", messages=USER, stream=True))
    pieces = [c.choices[0].delta.content for c in chunks[1:-1]]
    assert len(pieces) == 50
    assert "".join(p or "" for p in pieces) == "x" * 200


def test_chat_stream_parallel_tool_calls_assemble_by_index(fake_provider: FakeProvider) -> None:
    """Scripted parallel tool calls stream as a header plus several argument deltas per index."""
    calls = [
        {"name": "get_weather", "arguments": {"city": "Paris", "days": 3}},
        {"name": "get_time", "arguments": '{"tz": "Europe/Paris"}', "id": "call_fixed"},
    ]
    fake_provider.script(tool_calls=calls)
    with oai(fake_provider) as client:
        chunks = list(client.chat.completions.create(model="m", messages=USER, stream=True))
    assembled: dict[int, dict[str, Any]] = {}
    deltas_per_index: dict[int, int] = {}
    for chunk in chunks:
        for tc in chunk.choices[0].delta.tool_calls or []:
            slot = assembled.setdefault(tc.index, {"id": None, "name": "", "arguments": ""})
            deltas_per_index[tc.index] = deltas_per_index.get(tc.index, 0) + 1
            slot["id"] = tc.id or slot["id"]
            if tc.function is not None:
                slot["name"] += tc.function.name or ""
                slot["arguments"] += tc.function.arguments or ""
    assert json.loads(assembled[0]["arguments"]) == {"city": "Paris", "days": 3}
    assert assembled[0]["name"] == "get_weather"
    assert assembled[0]["id"].startswith("call_")
    assert assembled[1] == {
        "id": "call_fixed",
        "name": "get_time",
        "arguments": '{"tz": "Europe/Paris"}',
    }
    assert min(deltas_per_index.values()) >= 3
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    assert chunks[0].choices[0].delta.content is None


def test_chat_tools_call_first_tool_then_answer_tool_result(fake_provider: FakeProvider) -> None:
    """A request with tools gets a schema-valid call; once a tool result is last it gets text."""
    with oai(fake_provider) as client:
        first = client.chat.completions.create(model="m", messages=USER, tools=[WEATHER_TOOL])
        (call,) = first.choices[0].message.tool_calls or []
        assert first.choices[0].finish_reason == "tool_calls"
        assert call.type == "function"
        assert call.function.name == "get_weather"
        assert json.loads(call.function.arguments) == {"city": "fake", "days": 1}
        follow = [
            *USER,
            first.choices[0].message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
        ]
        second = client.chat.completions.create(model="m", messages=follow, tools=[WEATHER_TOOL])
        none = client.chat.completions.create(
            model="m", messages=USER, tools=[WEATHER_TOOL], tool_choice="none"
        )
    assert second.choices[0].message.content == "Echo: what is the weather"
    assert none.choices[0].message.tool_calls is None


def test_chat_parse_structured_output_and_strict_tool(fake_provider: FakeProvider) -> None:
    """``chat.completions.parse`` gets JSON valid for the pydantic schema, and parsed tool args."""
    with oai(fake_provider) as client:
        parsed = client.chat.completions.parse(model="m", messages=USER, response_format=City)
        tool = openai.pydantic_function_tool(City, name="save_city")
        with_tool = client.chat.completions.parse(model="m", messages=USER, tools=[tool])
    city = parsed.choices[0].message.parsed
    assert city == City(name="fake", population=1, tags=["fake"])
    (call,) = with_tool.choices[0].message.tool_calls or []
    assert call.function.parsed_arguments == city


def test_stop_reason_override_reaches_parse(fake_provider: FakeProvider) -> None:
    """A scripted ``stop_reason="length"`` makes ``parse`` raise LengthFinishReasonError."""
    fake_provider.script(text="{", stop_reason="length")
    with oai(fake_provider) as client, pytest.raises(openai.LengthFinishReasonError):
        client.chat.completions.parse(model="m", messages=USER, response_format=City)


def test_chat_forced_tool_choice(fake_provider: FakeProvider) -> None:
    """``tool_choice`` naming a function makes the fake call that function."""
    other = {"type": "function", "function": {"name": "other", "parameters": {"type": "object"}}}
    with oai(fake_provider) as client:
        reply = client.chat.completions.create(
            model="m",
            messages=USER,
            tools=[WEATHER_TOOL, other],  # type: ignore[list-item]
            tool_choice={"type": "function", "function": {"name": "other"}},
        )
    (call,) = reply.choices[0].message.tool_calls or []
    assert call.function.name == "other"  # type: ignore[union-attr]


def test_chat_stream_helper_final_completion(fake_provider: FakeProvider) -> None:
    """The ``chat.completions.stream`` helper assembles text deltas into the final completion."""
    fake_provider.script(text="hello from the fake")
    with (
        oai(fake_provider) as client,
        client.chat.completions.stream(model="m", messages=USER) as stream,
    ):
        deltas = [e.delta for e in stream if e.type == "content.delta"]
        final = stream.get_final_completion()
    assert "".join(deltas) == "hello from the fake"
    assert final.choices[0].message.content == "hello from the fake"


def test_async_chat_json_and_stream(fake_provider: FakeProvider) -> None:
    """The async openai client gets the same JSON and streamed replies."""

    async def main() -> tuple[str | None, str]:
        async with aoai(fake_provider) as client:
            reply = await client.chat.completions.create(model="m", messages=USER)
            stream = await client.chat.completions.create(model="m", messages=USER, stream=True)
            text = "".join([c.choices[0].delta.content or "" async for c in stream])
        return reply.choices[0].message.content, text

    assert asyncio.run(main()) == ("Echo: what is the weather", "Echo: what is the weather")
