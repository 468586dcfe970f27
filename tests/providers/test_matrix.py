"""The acceptance matrix: the user sees what the unpatched SDK gives; one exact record."""

from __future__ import annotations

import asyncio
from typing import Any

import anthropic
import openai
import pytest
from _provider_scenarios import run_async, run_sync

from logos_shift import _patching
from logos_shift.testing import FakeProvider, capture_records

STREAM_FORMS = ("stream", "raw_stream")
CASES: list[tuple[str, str, str, str, str]] = []
for sdk in ("openai", "anthropic"):
    for mode in ("sync", "async"):
        for form in ("plain", "raw", "streaming_response"):
            for outcome in ("success", "http_error"):
                CASES.append((sdk, mode, form, outcome, "exhaust"))
        for form in STREAM_FORMS:
            exits = ("exhaust", "break", "close", "ctx") + (("gc",) if mode == "sync" else ())
            for ex in exits:
                CASES.append((sdk, mode, form, "success", ex))
            CASES.append((sdk, mode, form, "http_error", "exhaust"))
            CASES.append((sdk, mode, form, "midstream", "exhaust"))
        for ex in ("exhaust", "final", "break"):
            CASES.append((sdk, mode, "helper", "success", ex))
        CASES.append((sdk, mode, "helper", "http_error", "exhaust"))
        CASES.append((sdk, mode, "helper", "midstream", "exhaust"))


def _client(sdk: str, mode: str, fp: FakeProvider) -> Any:
    if sdk == "openai":
        cls = openai.OpenAI if mode == "sync" else openai.AsyncOpenAI
        return cls(base_url=fp.openai_base_url, api_key="test", max_retries=0)
    acls = anthropic.Anthropic if mode == "sync" else anthropic.AsyncAnthropic
    return acls(base_url=fp.anthropic_base_url, api_key="test", max_retries=0)


def _run(sdk: str, mode: str, form: str, outcome: str, ex: str, fp: FakeProvider) -> Any:
    if outcome == "http_error":
        fp.script(status=400)
    elif outcome == "midstream":
        fp.script(error_after_chunks=3)
    client = _client(sdk, mode, fp)
    if mode == "sync":
        try:
            return run_sync(client, form, ex)
        finally:
            client.close()

    async def go() -> Any:
        try:
            return await run_async(client, form, ex)
        finally:
            await client.close()

    return asyncio.run(go())


@pytest.mark.parametrize(("sdk", "mode", "form", "outcome", "ex"), CASES)
def test_matrix(sdk: str, mode: str, form: str, outcome: str, ex: str, fp: FakeProvider) -> None:
    """A patched call gives the user exactly the unpatched SDK's view and one exact record."""
    bare = _run(sdk, mode, form, outcome, ex, fp)
    _patching.patch(sdk)
    with capture_records() as cap:
        seen = _run(sdk, mode, form, outcome, ex, fp)
        calls = cap.calls
    assert seen == bare
    assert len(calls) == 1
    rec = calls[0]
    model = "gpt-4o-mini" if sdk == "openai" else "claude-3-5-haiku"
    assert rec["provider"] == sdk
    assert rec["source"] == ("openai.chat.completions" if sdk == "openai" else "anthropic.messages")
    assert rec["requested_model"] == model
    assert rec["input"]["messages"] == [{"role": "user", "content": "tell me a story"}]
    assert "extra_headers" not in rec["input"]
    assert rec["sdk"]["name"] == sdk
    assert rec["latency_ms"] >= 0
    streamed = form in STREAM_FORMS or form == "helper"
    if outcome == "http_error":
        assert rec["error"]["status"] == 400
        assert rec["output"] is None
        assert rec["stream"] is None
        return
    if outcome == "midstream":
        assert rec["stream"]["status"] == "error"
        assert rec["error"]["type"] == bare["error"][0]
        return
    assert bare["error"] is None
    assert rec["error"] is None
    assert rec["served_model"] == model
    assert rec["response_id"]
    if not streamed:
        assert rec["stream"] is None
        assert rec["usage"]["input_tokens"] > 0
        text = (rec["output"]["choices"][0]["message"]["content"] if sdk == "openai"
                else rec["output"]["content"][0]["text"])  # fmt: skip
        assert text == "Echo: tell me a story"
        return
    partial = ex in ("break", "close", "gc")
    assert rec["stream"]["status"] == ("partial" if partial else "completed")
    if form in STREAM_FORMS:
        assert rec["stream"]["chunks"] == len(bare["seen"])
    if not partial:
        text = (rec["output"]["choices"][0]["message"]["content"] if sdk == "openai"
                else rec["output"]["content"][0]["text"])  # fmt: skip
        assert text == "Echo: tell me a story"
        assert rec["ttft_ms"] is not None
        if sdk == "anthropic":
            assert rec["usage"]["output_tokens"] == 5
