"""Test helpers: a local fake OpenAI- and Anthropic-compatible LLM server.

:class:`FakeProvider` runs a real HTTP server on ``127.0.0.1`` (a free port, a
daemon thread, stdlib only) that speaks enough of both APIs for the official SDKs
and their helpers to work offline:

* OpenAI: ``POST /v1/chat/completions`` (JSON / SSE, tool calls, ``n``,
  ``stream_options.include_usage``, ``response_format`` for ``parse``),
  ``GET /v1/models`` (base models plus fine-tuned ones; any id can be retrieved),
  ``POST /v1/responses`` (JSON / typed SSE events), ``POST /v1/embeddings``, files
  and ``fine_tuning.jobs`` (create / retrieve / list / events / cancel).
* Anthropic: ``POST /v1/messages`` (JSON / SSE, ``tool_use``, structured output,
  the beta client) and ``POST /v1/messages/count_tokens``.

It echoes the model it was asked for (so model routing is observable), answers
``"Echo: <last user message>"`` unless told otherwise, counts whitespace-separated
words as tokens, records every request, and can be scripted to fail.

Example::

    import openai
    from logos_shift.testing import FakeProvider

    with FakeProvider() as fp:
        fp.script(status=429, retry_after=0.01)  # the next request is rate limited
        with openai.OpenAI(base_url=fp.openai_base_url, api_key="test") as client:
            reply = client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
            )
        assert reply.choices[0].message.content == "Echo: hi"
        assert len(fp.requests) == 2  # the SDK retried once

Scripts are consumed first-in first-out, optionally only by one path or model::

    fp.script(text="Paris")                          # the next answer's text
    fp.script(tool_calls=[{"name": "f", "arguments": {"x": 1}}])
    fp.script(status=500, times=3)                   # three InternalServerErrors
    fp.script(disconnect_after_chunks=3)             # the stream drops after 3 events
    fp.script(error_after_chunks=2)                  # the provider's error event mid-stream
    fp.script(latency=0.5, model="gpt-4o", times=None)  # every gpt-4o answer is slow
    fp.fail_model("ft:gpt-4o-mini:fake::abc", 500)   # fails until fp.heal_model(...)
    fp.finetune_schedule(retrieves_per_phase=1)      # jobs advance one phase per retrieve

Streams split the text into ``chunks`` (default 5, ``FakeProvider(chunks=50)``)
near-equal pieces; tool-call arguments are split over several deltas too.

With pytest, enable the plugin and use the ``fake_provider`` fixture::

    # conftest.py
    pytest_plugins = ["logos_shift.testing"]

    # test_app.py
    def test_my_app(fake_provider):
        fake_provider.script(text="Paris")
        assert my_app.ask("capital of France?", base_url=fake_provider.openai_base_url) == "Paris"
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

from ._capture import Captured, capture_records
from ._provider import FakeProvider, RecordedRequest, Script


def _serve() -> Iterator[FakeProvider]:
    """Yield a started :class:`FakeProvider`, stopping it afterwards."""
    with FakeProvider() as provider:
        yield provider


# The fixture only exists when pytest is already loaded (as it is when this module is
# used as a plugin), so importing logos_shift.testing never imports pytest.
fake_provider: Any = _serve
if "pytest" in sys.modules:
    import pytest

    fake_provider = pytest.fixture(name="fake_provider")(_serve)


__all__ = [
    "Captured",
    "FakeProvider",
    "RecordedRequest",
    "Script",
    "capture_records",
    "fake_provider",
]
