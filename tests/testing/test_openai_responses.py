"""The OpenAI Responses and embeddings APIs of the fake provider, through the real openai SDK."""

from __future__ import annotations

import asyncio
import base64
import math
import struct

from logos_shift.testing import FakeProvider
from tests.testing.clients import (
    City,
    aoai,
    oai,
)


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
