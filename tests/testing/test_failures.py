"""Scripted failures: statuses, retries, disconnects, mid-stream errors, latency, model failures."""

from __future__ import annotations

import anthropic
import openai
import pytest

from logos_shift.testing import FakeProvider
from tests.testing.clients import (
    OVERLOADED,
    USER,
    ant,
    httpx,
    oai,
)


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
        (529, OVERLOADED),
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
        pytest.raises((anthropic.APIConnectionError, httpx.RemoteProtocolError)),
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
