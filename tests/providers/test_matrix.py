"""The provider matrix: what the user sees is unchanged, and the record is exact."""

from __future__ import annotations

from typing import Any

import pytest

from logos_shift import providers
from logos_shift.testing import FakeProvider, capture_records
from tests.providers.scenarios import AN_MODEL, OA_MODEL, PROMPT, run_async, run_sync


@pytest.fixture(autouse=True)
def _unpatched() -> Any:
    """Each test starts and ends with nothing patched."""
    providers.unpatch_all()
    yield
    providers.unpatch_all()


def _cases() -> list[tuple[str, str, str, str, str]]:
    cases = []
    for sdk in ("openai", "anthropic"):
        for mode in ("sync", "async"):
            for api in ("plain", "raw", "sresp"):
                for outcome in ("success", "http_error"):
                    cases.append((sdk, mode, api, outcome, "-"))
            for api in ("stream", "helper"):
                exits = ["exhaust", "close"]
                if mode == "sync" or api == "stream":
                    exits.append("ctx")
                if mode == "sync":
                    exits += ["break", "gc"]
                for exit_ in exits:
                    cases.append((sdk, mode, api, "success", exit_))
                cases.append((sdk, mode, api, "http_error", "exhaust"))
                cases.append((sdk, mode, api, "midstream_error", "exhaust"))
    return cases


def _run(sdk: str, mode: str, fp: FakeProvider, api: str, outcome: str, exit_: str) -> Any:
    if outcome == "http_error":
        fp.script(status=500)
    elif outcome == "midstream_error":
        fp.script(error_after_chunks=2)
    runner = run_sync if mode == "sync" else run_async
    return runner(sdk, fp, api, exit_)


def _text(sdk: str, output: Any) -> Any:
    if sdk == "openai":
        return output["choices"][0]["message"]["content"]
    return output["content"][0]["text"]


def _check(rec: dict[str, Any], sdk: str, api: str, outcome: str, exit_: str) -> None:
    model = OA_MODEL if sdk == "openai" else AN_MODEL
    assert rec["provider"] == sdk
    assert rec["source"] == ("openai.chat.completions" if sdk == "openai" else "anthropic.messages")
    assert rec["requested_model"] == model
    assert rec["input"]["messages"] == [{"role": "user", "content": PROMPT}]
    assert "extra_headers" not in rec["input"]
    assert rec["sdk"]["name"] == sdk
    assert rec["latency_ms"] >= 0
    assert rec["fallback"] is False
    assert rec["route"] is None
    streaming = api in ("stream", "helper")
    prefix = "chatcmpl-" if sdk == "openai" else "msg_"
    if outcome == "http_error":
        assert rec["error"]["type"] == "InternalServerError"
        assert rec["error"]["status"] == 500
        assert rec["output"] is None
        assert rec["stream"] is None
        return
    assert rec["served_model"] == model
    assert rec["response_id"].startswith(prefix)
    if not streaming:  # plain, raw, and streaming-response (the caller read the body)
        assert rec["error"] is None
        assert rec["stream"] is None
        assert _text(sdk, rec["output"]) == "Echo: " + PROMPT
        assert rec["usage"] == {"input_tokens": 6, "output_tokens": 7}
        return
    assert rec["ttft_ms"] is not None
    assert rec["ttft_ms"] <= rec["latency_ms"]
    if outcome == "midstream_error":
        assert rec["stream"]["status"] == "error"
        assert rec["error"]["type"] in ("APIError", "APIStatusError", "InternalServerError")
        return
    expected = "completed" if exit_ == "exhaust" else "partial"
    assert rec["stream"]["status"] == expected
    assert rec["error"] is None
    if expected == "completed":
        assert _text(sdk, rec["output"]) == "Echo: " + PROMPT
        if sdk == "anthropic":  # cumulative output count, not start + delta
            assert rec["usage"] == {"input_tokens": 6, "output_tokens": 7}
        else:  # include_usage was not asked for, so none is reported
            assert rec["usage"] is None
    else:
        assert 1 <= rec["stream"]["chunks"] < 7


@pytest.mark.parametrize(("sdk", "mode", "api", "outcome", "exit_"), _cases())
def test_matrix(
    fake_provider: FakeProvider, sdk: str, mode: str, api: str, outcome: str, exit_: str
) -> None:
    """A patched SDK gives exactly what the unpatched one does and records one exact call."""
    bare = _run(sdk, mode, fake_provider, api, outcome, exit_)
    providers.patch_all()
    with capture_records() as cap:
        seen = _run(sdk, mode, fake_provider, api, outcome, exit_)
        calls = cap.calls
    assert seen == bare
    assert len(calls) == 1
    _check(calls[0], sdk, api, outcome, exit_)
