"""The fake provider (logos_shift.testing) driven by the real openai and anthropic SDKs."""

from __future__ import annotations

import asyncio
import base64
import json
import math
import struct
import subprocess
import sys
from typing import Any

import anthropic
import openai
import pydantic
import pytest

from logos_shift import testing
from logos_shift.testing import FakeProvider

try:  # openai 3.x / anthropic 2.x use httpx2; older releases use httpx
    import httpx2 as _httpx
except ImportError:  # pragma: no cover - oldest-SDK run
    import httpx as _httpx  # type: ignore[no-redef]

#: anthropic < 0.50 has no OverloadedError; 529 is then a plain APIStatusError.
_OVERLOADED: type[anthropic.APIStatusError] = getattr(
    anthropic, "OverloadedError", anthropic.APIStatusError
)

# The public fixture, registered here exactly as users get it from the plugin.
fake_provider = testing.fake_provider

USER = [{"role": "user", "content": "what is the weather"}]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city", "days"],
        },
    },
}
ANTHROPIC_TOOL = {
    "name": "get_weather",
    "description": "weather",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}


class City(pydantic.BaseModel):
    name: str
    population: int
    tags: list[str]


def oai(fp: FakeProvider, retries: int = 0) -> openai.OpenAI:
    return openai.OpenAI(base_url=fp.openai_base_url, api_key="test", max_retries=retries)


def aoai(fp: FakeProvider, retries: int = 0) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=fp.openai_base_url, api_key="test", max_retries=retries)


def ant(fp: FakeProvider, retries: int = 0) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=fp.anthropic_base_url, api_key="test", max_retries=retries)


def aant(fp: FakeProvider, retries: int = 0) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(
        base_url=fp.anthropic_base_url, api_key="test", max_retries=retries
    )


# -- OpenAI chat completions -------------------------------------------------


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


# -- OpenAI responses and embeddings ------------------------------------------


def test_responses_json_text_and_function_call(fake_provider: FakeProvider) -> None:
    """``responses.create`` returns a message item, or a function_call item given tools."""
    tool = {
        "type": "function",
        "name": "lookup",
        "parameters": {"type": "object", "properties": {}},
    }
    with oai(fake_provider) as client:
        reply = client.responses.create(model="m", input="hello there", instructions="be brief")
        called = client.responses.create(model="m", input="hello", tools=[tool])  # type: ignore[list-item]
    assert reply.id.startswith("resp_")
    assert reply.model == "m"
    assert reply.output_text == "Echo: hello there"
    assert reply.usage is not None
    assert (reply.usage.input_tokens, reply.usage.output_tokens) == (4, 3)
    (item,) = called.output
    assert item.type == "function_call"
    assert item.name == "lookup"
    assert item.arguments == "{}"


def test_responses_raw_stream_event_types(fake_provider: FakeProvider) -> None:
    """A streamed response emits the real event sequence with increasing sequence numbers."""
    fake_provider.script(text="abc", chunks=3)
    with oai(fake_provider) as client:
        events = list(client.responses.create(model="m", input="x", stream=True))
    types = [e.type for e in events]
    assert types == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    completed = events[-1]
    assert completed.type == "response.completed"
    assert completed.response.output_text == "abc"
    assert completed.response.usage is not None
    assert completed.response.usage.output_tokens == 1


def test_responses_stream_helper_and_parse(fake_provider: FakeProvider) -> None:
    """``responses.stream`` (with a tool call) and ``responses.parse`` work against the fake."""
    tool = {"type": "function", "name": "f", "parameters": {"type": "object", "properties": {}}}
    fake_provider.script(text="streamed text")
    with oai(fake_provider) as client:
        with client.responses.stream(model="m", input="x") as stream:
            deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
            final = stream.get_final_response()
        with client.responses.stream(model="m", input="x", tools=[tool]) as stream:  # type: ignore[list-item]
            called = stream.get_final_response()
        parsed = client.responses.parse(model="m", input="x", text_format=City)
    assert "".join(deltas) == "streamed text" == final.output_text
    assert called.output[0].type == "function_call"
    assert parsed.output_parsed == City(name="fake", population=1, tags=["fake"])


def test_async_responses_stream_helper(fake_provider: FakeProvider) -> None:
    """The async ``responses.stream`` helper reaches ``response.completed``."""

    async def main() -> str:
        async with (
            aoai(fake_provider) as client,
            client.responses.stream(model="m", input="hi") as stream,
        ):
            final = await stream.get_final_response()
        return final.output_text

    assert asyncio.run(main()) == "Echo: hi"


def test_embeddings_are_deterministic_unit_vectors(fake_provider: FakeProvider) -> None:
    """Embeddings depend only on model and input, are unit length, and honour dimensions/base64."""
    with oai(fake_provider) as client:
        a = client.embeddings.create(model="e", input=["alpha", "beta gamma"])
        b = client.embeddings.create(model="e", input="alpha", dimensions=4)
        c = client.embeddings.create(model="e", input="alpha")
        raw = client.embeddings.create(model="e", input="alpha", encoding_format="base64")
    assert len(a.data) == 2
    assert len(a.data[0].embedding) == 16
    assert a.data[0].embedding == c.data[0].embedding != a.data[1].embedding
    assert len(b.data[0].embedding) == 4
    # The SDK asks for base64 (float32) by default, hence the tolerance.
    assert math.isclose(sum(v * v for v in a.data[0].embedding), 1.0, rel_tol=1e-6)
    assert a.usage.prompt_tokens == 3
    decoded = struct.unpack("<16f", base64.b64decode(str(raw.data[0].embedding)))
    assert all(
        math.isclose(x, y, rel_tol=1e-6) for x, y in zip(decoded, c.data[0].embedding, strict=True)
    )


# -- Anthropic messages -------------------------------------------------------


def test_messages_json_text_and_tool_use(fake_provider: FakeProvider) -> None:
    """``messages.create`` echoes the user; with tools it calls one until a tool_result."""
    with ant(fake_provider) as client:
        msg = client.messages.create(
            model="claude-x", max_tokens=50, messages=USER, system="be nice"
        )
        tool_msg = client.messages.create(
            model="claude-x", max_tokens=50, messages=USER, tools=[ANTHROPIC_TOOL]
        )
        block = tool_msg.content[0]
        assert block.type == "tool_use"
        done = client.messages.create(
            model="claude-x",
            max_tokens=50,
            tools=[ANTHROPIC_TOOL],
            messages=[
                *USER,
                {"role": "assistant", "content": [block.model_dump()]},
                {
                    "role": "user",
                    "content": [{"type": "tool_result", "tool_use_id": block.id, "content": "ok"}],
                },
            ],
        )
    assert msg.id.startswith("msg_")
    assert msg.model == "claude-x"
    assert msg.content[0].type == "text"
    assert msg.content[0].text == "Echo: what is the weather"
    assert (msg.usage.input_tokens, msg.usage.output_tokens, msg.stop_reason) == (6, 5, "end_turn")
    assert block.name == "get_weather"
    assert block.input == {"city": "fake"}
    assert tool_msg.stop_reason == "tool_use"
    assert done.content[0].type == "text"


def test_messages_raw_stream_cumulative_usage_and_tool_json(fake_provider: FakeProvider) -> None:
    """A raw message stream carries start usage 1, input_json deltas and cumulative output usage."""
    fake_provider.script(text="a b c", tool_calls=[{"name": "t", "input": {"q": "long query"}}])
    with ant(fake_provider) as client:
        events = list(client.messages.create(model="c", max_tokens=9, messages=USER, stream=True))
    types = [e.type for e in events]
    assert types[0] == "message_start"
    assert types[-2:] == ["message_delta", "message_stop"]
    start, delta = events[0], events[-2]
    assert start.type == "message_start"
    assert start.message.usage.output_tokens == 1
    assert delta.type == "message_delta"
    assert delta.usage.output_tokens == 3 + 3 + 1
    assert delta.delta.stop_reason == "tool_use"
    partial = [
        e.delta.partial_json
        for e in events
        if e.type == "content_block_delta" and e.delta.type == "input_json_delta"
    ]
    assert len(partial) >= 3
    assert json.loads("".join(partial)) == {"q": "long query"}


def test_messages_stream_malformed_scripted_tool_json(fake_provider: FakeProvider) -> None:
    """Malformed scripted tool arguments stream verbatim, so the SDK's own parse error shows."""
    fake_provider.script(tool_calls=[{"name": "t", "arguments": '{"q" 1}'}])
    with (
        ant(fake_provider) as client,
        client.messages.stream(model="c", max_tokens=9, messages=USER) as stream,
        pytest.raises(ValueError, match="Unable to parse tool parameter JSON"),
    ):
        stream.until_done()


def test_messages_stream_helpers(fake_provider: FakeProvider) -> None:
    """``messages.stream`` gives text_stream, get_final_message and until_done."""
    fake_provider.script(text="streamed answer", times=2)
    with ant(fake_provider) as client:
        with client.messages.stream(model="c", max_tokens=9, messages=USER) as stream:
            text = "".join(stream.text_stream)
            final = stream.get_final_message()
        with client.messages.stream(model="c", max_tokens=9, messages=USER) as stream:
            stream.until_done()
            again = stream.get_final_text()
    assert text == "streamed answer" == again
    assert final.usage.input_tokens == 4
    assert final.usage.output_tokens == 2


def test_async_messages_stream_helper(fake_provider: FakeProvider) -> None:
    """The async ``messages.stream`` helper yields the text and the final message."""

    async def main() -> tuple[str, str]:
        async with (
            aant(fake_provider) as client,
            client.messages.stream(model="c", max_tokens=9, messages=USER) as stream,
        ):
            text = "".join([t async for t in stream.text_stream])
            final = await stream.get_final_message()
        block = final.content[0]
        return text, block.text if block.type == "text" else ""

    assert asyncio.run(main()) == ("Echo: what is the weather",) * 2


def test_beta_messages_create_and_stream(fake_provider: FakeProvider) -> None:
    """The beta messages client works, and its ``anthropic-beta`` header is recorded."""
    with ant(fake_provider) as client:
        msg = client.beta.messages.create(model="c", max_tokens=9, messages=USER, betas=["b-1"])
        with client.beta.messages.stream(model="c", max_tokens=9, messages=USER) as stream:
            final = stream.get_final_message()
    assert msg.content[0].type == "text"
    assert final.content[0].type == "text"
    assert fake_provider.requests[0].headers["anthropic-beta"] == "b-1"


def test_messages_parse_structured_output(fake_provider: FakeProvider) -> None:
    """``messages.parse`` (stable and beta) gets JSON valid for the output_format model."""
    with ant(fake_provider) as client:
        stable = client.messages.parse(model="c", max_tokens=9, messages=USER, output_format=City)
        beta = client.beta.messages.parse(
            model="c", max_tokens=9, messages=USER, output_format=City
        )
    assert stable.parsed_output == City(name="fake", population=1, tags=["fake"])
    assert beta.parsed_output == stable.parsed_output


def test_count_tokens(fake_provider: FakeProvider) -> None:
    """``messages.count_tokens`` counts the words of the messages and system prompt."""
    with ant(fake_provider) as client:
        counted = client.messages.count_tokens(model="c", messages=USER, system="two words")
    assert counted.input_tokens == 6


# -- scripted failures --------------------------------------------------------


def test_openai_429_retry_after_then_success(fake_provider: FakeProvider) -> None:
    """A scripted 429 with Retry-After is retried by the SDK, and both attempts are recorded."""
    script = fake_provider.script(status=429, retry_after=0.01)
    with oai(fake_provider, retries=2) as client:
        reply = client.chat.completions.create(model="m", messages=USER)
    assert reply.choices[0].message.content == "Echo: what is the weather"
    assert len(fake_provider.requests) == 2
    assert script.used == 1
    assert fake_provider.requests[1].headers["x-stainless-retry-count"] == "1"


def test_anthropic_429_retry_after_then_success(fake_provider: FakeProvider) -> None:
    """The anthropic SDK also retries a scripted 429 and then succeeds."""
    fake_provider.script(status=429, retry_after=0.01)
    with ant(fake_provider, retries=1) as client:
        msg = client.messages.create(model="c", max_tokens=9, messages=USER)
    assert msg.content[0].type == "text"
    assert len(fake_provider.requests) == 2


@pytest.mark.parametrize(
    ("status", "exc"),
    [
        (404, openai.NotFoundError),
        (429, openai.RateLimitError),
        (500, openai.InternalServerError),
        (400, openai.BadRequestError),
    ],
)
def test_openai_status_errors_map_to_sdk_exceptions(
    fake_provider: FakeProvider, status: int, exc: type[openai.APIStatusError]
) -> None:
    """Scripted statuses use OpenAI's error JSON, so the SDK raises the matching subclass."""
    fake_provider.script(status=status)
    with oai(fake_provider) as client, pytest.raises(exc) as info:
        client.chat.completions.create(model="gpt-q", messages=USER)
    assert info.value.status_code == status
    body = info.value.body
    assert isinstance(body, dict)
    assert "message" in body
    if status == 404:
        assert body["code"] == "model_not_found"
        assert "gpt-q" in body["message"]


@pytest.mark.parametrize(
    ("status", "exc"),
    [
        (404, anthropic.NotFoundError),
        (429, anthropic.RateLimitError),
        (500, anthropic.InternalServerError),
        (529, _OVERLOADED),
    ],
)
def test_anthropic_status_errors_map_to_sdk_exceptions(
    fake_provider: FakeProvider, status: int, exc: type[anthropic.APIStatusError]
) -> None:
    """Scripted statuses under /v1/messages use Anthropic's error JSON and exception classes."""
    fake_provider.script(status=status)
    with ant(fake_provider) as client, pytest.raises(exc) as info:
        client.messages.create(model="c", max_tokens=9, messages=USER)
    assert info.value.status_code == status
    assert isinstance(info.value.body, dict)
    assert info.value.body["type"] == "error"


def test_custom_error_body_and_headers(fake_provider: FakeProvider) -> None:
    """A scripted body and headers are sent as given."""
    fake_provider.script(
        status=503, body={"error": {"message": "custom"}}, headers={"x-why": "test"}
    )
    with oai(fake_provider) as client, pytest.raises(openai.InternalServerError) as info:
        client.chat.completions.create(model="m", messages=USER)
    assert info.value.message.endswith("custom")
    assert info.value.response.headers["x-why"] == "test"


def test_openai_disconnect_mid_stream_raises(fake_provider: FakeProvider) -> None:
    """Dropping the connection after k events raises APIConnectionError after k chunks."""
    fake_provider.script(disconnect_after_chunks=3)
    received = []
    with oai(fake_provider) as client:
        stream = client.chat.completions.create(model="m", messages=USER, stream=True)
        iterator = iter(stream)
        with pytest.raises(openai.APIConnectionError):  # noqa: PT012 - count what arrived first
            for chunk in iterator:
                received.append(chunk)
    assert len(received) == 3


def test_anthropic_disconnect_mid_stream_raises(fake_provider: FakeProvider) -> None:
    """Dropping a Messages stream mid-way raises from the anthropic stream helper."""
    fake_provider.script(disconnect_after_chunks=4)
    with (
        ant(fake_provider) as client,
        client.messages.stream(model="c", max_tokens=9, messages=USER) as stream,
        pytest.raises((anthropic.APIConnectionError, _httpx.RemoteProtocolError)),
    ):
        list(stream.text_stream)


def test_disconnect_without_response(fake_provider: FakeProvider) -> None:
    """A non-streamed request scripted to disconnect raises APIConnectionError."""
    fake_provider.script(disconnect_after_chunks=0)
    with oai(fake_provider) as client, pytest.raises(openai.APIConnectionError):
        client.chat.completions.create(model="m", messages=USER)


def test_openai_error_chunk_mid_stream(fake_provider: FakeProvider) -> None:
    """An ``error`` chunk mid-stream makes the openai stream raise APIError with its message."""
    fake_provider.script(error_after_chunks=2, error_message="boom")
    with oai(fake_provider) as client:
        stream = client.chat.completions.create(model="m", messages=USER, stream=True)
        with pytest.raises(openai.APIError, match="boom"):
            list(stream)


def test_anthropic_error_event_mid_stream(fake_provider: FakeProvider) -> None:
    """An ``event: error`` mid-stream makes the anthropic stream raise an APIStatusError."""
    fake_provider.script(error_after_chunks=3)
    with ant(fake_provider) as client:
        stream = client.messages.create(model="c", max_tokens=9, messages=USER, stream=True)
        with pytest.raises(anthropic.APIStatusError) as info:
            list(stream)
    assert isinstance(info.value.body, dict)
    assert info.value.body["error"]["type"] == "overloaded_error"


def test_responses_error_event_mid_stream(fake_provider: FakeProvider) -> None:
    """A Responses stream scripted to fail ends with an ``error`` event and no completion."""
    fake_provider.script(error_after_chunks=4)
    with oai(fake_provider) as client:
        events = list(client.responses.create(model="m", input="x", stream=True))
    assert [e.type for e in events][-1] == "error"
    assert len(events) == 5


def test_latency_and_chunk_delay_still_answer(fake_provider: FakeProvider) -> None:
    """Latency and chunk delays hold the answer back but change nothing in it."""
    script = fake_provider.script(latency=0.05, chunk_delay=0.01)
    with oai(fake_provider) as client:
        chunks = list(client.chat.completions.create(model="m", messages=USER, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Echo: what is the weather"
    assert script.used == 1


def test_scripts_are_fifo_and_filtered(fake_provider: FakeProvider) -> None:
    """Scripts are consumed in order by matching requests only; path=None skips non-model paths."""
    fake_provider.script(text="for b", model="b")
    fake_provider.script(text="first")
    fake_provider.script(text="second", path="/v1/chat/completions")
    forever = fake_provider.script(text="anthropic", path="/v1/messages", times=None)
    with oai(fake_provider) as client, ant(fake_provider) as aclient:
        client.files.list()  # not a model endpoint: consumes nothing
        texts = [
            client.chat.completions.create(model=m, messages=USER).choices[0].message.content
            for m in ("a", "a", "b", "a")
        ]
        for _ in range(3):
            block = aclient.messages.create(model="c", max_tokens=9, messages=USER).content[0]
            assert block.type == "text"
            assert block.text == "anthropic"
    assert texts == ["first", "second", "for b", "Echo: what is the weather"]
    assert forever.used == 3


def test_fail_model_until_healed(fake_provider: FakeProvider) -> None:
    """``fail_model`` fails every request for that model only, until ``heal_model``."""
    fake_provider.fail_model("ft:bad", status=404)
    fake_provider.script(text="kept")
    with oai(fake_provider) as client:
        for _ in range(2):
            with pytest.raises(openai.NotFoundError):
                client.chat.completions.create(model="ft:bad", messages=USER)
        assert (
            client.chat.completions.create(model="ok", messages=USER).choices[0].message.content
            == "kept"
        )
        fake_provider.heal_model("ft:bad")
        healed = client.chat.completions.create(model="ft:bad", messages=USER)
    assert healed.model == "ft:bad"


# -- fine-tuning ----------------------------------------------------------------


def _training_jsonl(n: int = 10) -> bytes:
    rows = [
        {"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "a"}]}
        for i in range(n)
    ]
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def test_finetune_lifecycle_by_retrievals(fake_provider: FakeProvider) -> None:
    """A job moves one phase per retrieval to succeeded, and its fine-tuned model is served."""
    fake_provider.finetune_schedule(retrieves_per_phase=1)
    with oai(fake_provider) as client:
        upload = client.files.create(file=("train.jsonl", _training_jsonl()), purpose="fine-tune")
        assert upload.id.startswith("file-")
        assert upload.filename == "train.jsonl"
        assert client.files.retrieve(upload.id).bytes == len(_training_jsonl())
        job = client.fine_tuning.jobs.create(model="gpt-base", training_file=upload.id, suffix="s")
        statuses = [job.status] + [
            client.fine_tuning.jobs.retrieve(job.id).status for _ in range(4)
        ]
        final = client.fine_tuning.jobs.retrieve(job.id)
        events = [e.message for e in client.fine_tuning.jobs.list_events(job.id)]
        listed = [j.id for j in client.fine_tuning.jobs.list()]
        assert final.fine_tuned_model is not None
        served = client.chat.completions.create(model=final.fine_tuned_model, messages=USER)
    assert job.id.startswith("ftjob-")
    assert statuses == ["validating_files", "queued", "running", "succeeded", "succeeded"]
    assert final.fine_tuned_model == f"ft:gpt-base:fake:s:{job.id.removeprefix('ftjob-')}"
    assert final.trained_tokens == 20 * 3
    assert final.finished_at is not None
    assert events[0] == "The job has successfully completed"  # newest first
    assert listed == [job.id]
    assert served.model == final.fine_tuned_model
    assert fake_provider.file_content(upload.id) == _training_jsonl()
    assert fake_provider.fine_tuned_models() == [final.fine_tuned_model]


def test_finetune_time_schedule_zero_finishes_at_first_read(fake_provider: FakeProvider) -> None:
    """With ``seconds_per_phase=0`` a job has succeeded by its first retrieval."""
    fake_provider.finetune_schedule(seconds_per_phase=0)
    with oai(fake_provider) as client:
        upload = client.files.create(file=("t.jsonl", _training_jsonl()), purpose="fine-tune")
        job = client.fine_tuning.jobs.create(model="b", training_file=upload.id)
        assert client.fine_tuning.jobs.retrieve(job.id).status == "succeeded"


def test_finetune_scripted_failure_and_bad_file(fake_provider: FakeProvider) -> None:
    """A scripted failure ends the job failed with its error; a too-small file fails validation."""
    error = {"code": "quota", "message": "no quota", "param": None}
    fake_provider.finetune_schedule(retrieves_per_phase=1, outcome="failed", error=error)
    with oai(fake_provider) as client:
        good = client.files.create(file=("t.jsonl", _training_jsonl()), purpose="fine-tune")
        small = client.files.create(file=("s.jsonl", _training_jsonl(3)), purpose="fine-tune")
        job = client.fine_tuning.jobs.create(model="b", training_file=good.id)
        bad = client.fine_tuning.jobs.create(model="b", training_file=small.id)
        for _ in range(3):
            failed = client.fine_tuning.jobs.retrieve(job.id)
        invalid = client.fine_tuning.jobs.retrieve(bad.id)
    assert failed.status == "failed"
    assert failed.fine_tuned_model is None
    assert failed.error is not None
    assert failed.error.message == "no quota"
    assert invalid.status == "failed"
    assert invalid.error is not None
    assert invalid.error.code == "invalid_training_file"


def test_finetune_cancel_and_unknown_ids(fake_provider: FakeProvider) -> None:
    """Cancel stops a running job (twice is a 400); unknown files and jobs are 400 / 404."""
    fake_provider.finetune_schedule(retrieves_per_phase=100)
    with oai(fake_provider) as client:
        upload = client.files.create(file=("t.jsonl", _training_jsonl()), purpose="fine-tune")
        job = client.fine_tuning.jobs.create(model="b", training_file=upload.id)
        assert client.fine_tuning.jobs.cancel(job.id).status == "cancelled"
        with pytest.raises(openai.BadRequestError):
            client.fine_tuning.jobs.cancel(job.id)
        with pytest.raises(openai.BadRequestError):
            client.fine_tuning.jobs.create(model="b", training_file="file-missing")
        with pytest.raises(openai.NotFoundError):
            client.fine_tuning.jobs.retrieve("ftjob-missing")
        with pytest.raises(openai.NotFoundError):
            client.files.retrieve("file-missing")


def test_finetune_path_script_fails_upload(fake_provider: FakeProvider) -> None:
    """A script with ``path="/v1/files"`` makes the upload fail with a 500."""
    fake_provider.script(status=500, path="/v1/files")
    with oai(fake_provider) as client, pytest.raises(openai.InternalServerError):
        client.files.create(file=("t.jsonl", _training_jsonl()), purpose="fine-tune")


# -- lifecycle and plumbing -------------------------------------------------------


def test_stop_closes_keep_alive_connections_and_restart_is_refused() -> None:
    """Stopping with a client's keep-alive connection still open closes it cleanly."""
    fp = FakeProvider().start()
    with pytest.raises(RuntimeError):
        fp.start()
    client = oai(fp)
    try:
        client.chat.completions.create(model="m", messages=USER)
        fp.stop()
        with pytest.raises(openai.APIConnectionError):
            client.chat.completions.create(model="m", messages=USER)
    finally:
        client.close()
        fp.stop()
    with pytest.raises(RuntimeError):
        _ = fp.url


def test_clear_and_reset(fake_provider: FakeProvider) -> None:
    """``clear`` forgets requests only; ``reset`` also drops scripts and model failures."""
    fake_provider.script(text="pending")
    fake_provider.fail_model("x")
    with oai(fake_provider) as client:
        client.embeddings.create(model="e", input="a")
        fake_provider.clear()
        assert fake_provider.requests == []
        fake_provider.reset()
        reply = client.chat.completions.create(model="x", messages=USER)
    assert reply.choices[0].message.content == "Echo: what is the weather"
    assert fake_provider.errors == []


def test_models_list_and_retrieve(fake_provider: FakeProvider) -> None:
    """``models.list`` includes fine-tuned models and any model id can be retrieved."""
    fake_provider.finetune_schedule(seconds_per_phase=0)
    with oai(fake_provider) as client:
        upload = client.files.create(file=("t.jsonl", _training_jsonl()), purpose="fine-tune")
        job = client.fine_tuning.jobs.create(model="b", training_file=upload.id)
        name = client.fine_tuning.jobs.retrieve(job.id).fine_tuned_model
        listed = [m.id for m in client.models.list()]
        retrieved = client.models.retrieve(str(name))
    assert name in listed
    assert "gpt-4o-mini" in listed
    assert retrieved.id == name


def test_unknown_path_is_404(fake_provider: FakeProvider) -> None:
    """An unknown endpoint answers 404 in OpenAI's error shape."""
    with oai(fake_provider) as client, pytest.raises(openai.NotFoundError) as info:
        client.batches.list()
    assert "Unknown path GET /v1/batches" in info.value.message


def test_pytest_plugin_provides_fixture(tmp_path: Any) -> None:
    """``pytest_plugins = ["logos_shift.testing"]`` gives users a started ``fake_provider``."""
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["logos_shift.testing"]\n')
    (tmp_path / "test_user.py").write_text(
        "import openai\n"
        "def test_app(fake_provider):\n"
        "    fake_provider.script(text='Paris')\n"
        "    with openai.OpenAI(base_url=fake_provider.openai_base_url, api_key='k') as c:\n"
        "        msgs = [{'role': 'user', 'content': 'q'}]\n"
        "        r = c.chat.completions.create(model='m', messages=msgs)\n"
        "    assert r.choices[0].message.content == 'Paris'\n"
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-W",
            "error",
            str(tmp_path),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


def test_import_does_not_import_pytest() -> None:
    """Importing logos_shift.testing outside pytest neither needs nor loads pytest."""
    code = (
        "import sys, logos_shift.testing as t; "
        "assert 'pytest' not in sys.modules; assert callable(t.fake_provider); "
        "assert sorted(t.__all__) == t.__all__"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
