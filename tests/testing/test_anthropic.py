"""Anthropic messages served by the fake provider, through the real anthropic SDK."""

from __future__ import annotations

import asyncio
import json

import pytest

from logos_shift.testing import FakeProvider
from tests.testing.clients import (
    ANTHROPIC_TOOL,
    USER,
    City,
    aant,
    ant,
)


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
