"""google-genai against the fake Gemini API: the user's view is unchanged, the record exact.

Each scenario runs unpatched, then patched, and both runs must give the user the
same chunks, texts and exceptions; the patched run must leave exactly one
correct record per request.
"""

from __future__ import annotations

import asyncio
import gc
import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("google.genai")  # the oldest-SDK run of openai/anthropic does not have it

from google import genai
from google.genai import errors, types

import logos_shift
from logos_shift import providers
from logos_shift.testing import FakeProvider, capture_records

MODEL = "gemini-2.0-flash"
TUNED = "tunedModels/support-ft"
PROMPT = "one two three four five six"


@pytest.fixture(autouse=True)
def _unpatched() -> Any:
    """Each test starts and ends with nothing patched."""
    providers.unpatch_all()
    yield
    providers.unpatch_all()


#: google-genai < 1.23 has no retry options (and does not retry).
RETRIES = hasattr(types, "HttpRetryOptions")


def _client(fp: FakeProvider, attempts: int = 1) -> genai.Client:
    if not RETRIES:
        return genai.Client(
            api_key="k", http_options=types.HttpOptions(base_url=fp.gemini_base_url)
        )
    retry = types.HttpRetryOptions(
        attempts=attempts, initial_delay=0.01, max_delay=0.02, http_status_codes=[429]
    )
    opts = types.HttpOptions(base_url=fp.gemini_base_url, retry_options=retry)
    return genai.Client(api_key="k", http_options=opts)


def _norm(value: Any) -> Any:
    if hasattr(value, "model_dump"):
        value = value.model_dump(mode="json", exclude={"sdk_http_response"})
    if isinstance(value, dict):
        return {
            k: "<x>" if k in ("response_id", "create_time") else _norm(v) for k, v in value.items()
        }
    if isinstance(value, list):
        return [_norm(v) for v in value]
    return value


def _is_raised(seen: Any) -> bool:
    return isinstance(seen, tuple) and seen[0] == "raised"


def _raised(exc: BaseException) -> Any:
    return ("raised", type(exc).__name__, getattr(exc, "code", None))


def _close(c: Any) -> None:
    close = getattr(c, "close", None)  # older clients have none and close on GC
    if close is not None:
        close()


def _sync(fp: FakeProvider, api: str, exit_: str, model: str = MODEL) -> Any:
    c = _client(fp)
    try:
        if api == "plain":
            return _norm(c.models.generate_content(model=model, contents=PROMPT))
        if api == "chat":
            return _norm(c.chats.create(model=model).send_message(PROMPT))
        if api == "embed":
            return _norm(c.models.embed_content(model=model, contents=PROMPT))
        if api == "chat_stream":
            it = c.chats.create(model=model).send_message_stream(PROMPT)
        else:
            it = c.models.generate_content_stream(model=model, contents=PROMPT)
        if exit_ == "exhaust":
            return [_norm(ch) for ch in it]
        out = [_norm(next(iter(it)))]
        if exit_ == "close":
            it.close()
        elif exit_ == "gc":
            del it
            gc.collect()
        return out
    except errors.APIError as exc:
        return _raised(exc)
    finally:
        _close(c)


async def _arun(fp: FakeProvider, api: str, exit_: str, model: str = MODEL) -> Any:
    c = _client(fp).aio
    try:
        if api == "plain":
            return _norm(await c.models.generate_content(model=model, contents=PROMPT))
        if api == "chat":
            return _norm(await c.chats.create(model=model).send_message(PROMPT))
        if api == "embed":
            return _norm(await c.models.embed_content(model=model, contents=PROMPT))
        if api == "chat_stream":
            it = await c.chats.create(model=model).send_message_stream(PROMPT)
        else:
            it = await c.models.generate_content_stream(model=model, contents=PROMPT)
        if exit_ == "exhaust":
            return [_norm(ch) async for ch in it]
        out = [_norm(await it.__anext__())]
        await it.aclose()
        return out
    except errors.APIError as exc:
        return _raised(exc)
    finally:
        if hasattr(c, "aclose"):  # google-genai >= 1.x.y; older clients close on GC
            await c.aclose()


def _run(fp: FakeProvider, mode: str, api: str, outcome: str, exit_: str) -> Any:
    if outcome == "http_error":
        fp.script(status=500)
    elif outcome == "midstream_error":
        fp.script(error_after_chunks=2)
    if mode == "sync":
        return _sync(fp, api, exit_)
    return asyncio.run(_arun(fp, api, exit_))


def _cases() -> list[tuple[str, str, str, str]]:
    cases = []
    for mode in ("sync", "async"):
        for api in ("plain", "chat", "embed"):
            for outcome in ("success", "http_error"):
                cases.append((mode, api, outcome, "-"))
        for api in ("stream", "chat_stream"):
            exits = ["exhaust", "close"] + (["break", "gc"] if mode == "sync" else [])
            for exit_ in exits:
                cases.append((mode, api, "success", exit_))
            cases.append((mode, api, "http_error", "exhaust"))
            cases.append((mode, api, "midstream_error", "exhaust"))
    return cases


def _check(rec: dict[str, Any], api: str, outcome: str, exit_: str, bare: Any) -> None:
    assert rec["provider"] == "google_genai"
    assert rec["sdk"]["name"] == "google-genai"
    embed = api == "embed"
    assert rec["source"] == (
        "google_genai.embed_content" if embed else "google_genai.generate_content"
    )
    assert rec["requested_model"] == MODEL
    assert rec["latency_ms"] >= 0
    assert rec["fallback"] is False
    assert rec["route"] is None
    if outcome == "http_error":
        assert rec["error"]["type"] == "ServerError"
        assert rec["error"]["status"] == 500
        assert rec["output"] is None
        assert rec["stream"] is None
        return
    if embed:
        assert rec["error"] is None
        assert len(rec["output"]["embeddings"][0]["values"]) == 16
        assert "sdk_http_response" not in rec["output"]
        return
    assert rec["served_model"] == MODEL
    # older SDKs do not read responseId (None); test_ids_are_the_sdks checks it exactly
    assert rec["response_id"] is None or rec["response_id"].startswith("gres_")
    out = rec["output"]
    assert out["response_id"] == rec["response_id"]
    if api in ("plain", "chat"):
        assert rec["error"] is None
        assert rec["stream"] is None
        assert out["candidates"][0]["content"]["parts"] == [{"text": "Echo: " + PROMPT}]
        assert out["candidates"][0]["finish_reason"] == "STOP"
        assert rec["usage"] == {"input_tokens": 6, "output_tokens": 7}
        return
    assert rec["ttft_ms"] is not None
    if outcome == "midstream_error" and not _is_raised(bare):
        # google-genai < 1.2x yields the error event as a chunk instead of raising
        assert rec["stream"] == {"status": "completed", "chunks": 3}
        return
    if outcome == "midstream_error":
        assert rec["stream"] == {"status": "error", "chunks": 2}
        assert rec["error"]["status"] == 503
        return
    expected = "completed" if exit_ == "exhaust" else "partial"
    assert rec["stream"]["status"] == expected
    assert rec["error"] is None
    if expected == "completed":
        assert out["candidates"][0]["content"]["parts"] == [{"text": "Echo: " + PROMPT}]
        assert out["candidates"][0]["finish_reason"] == "STOP"
        assert rec["usage"] == {"input_tokens": 6, "output_tokens": 7}
    else:
        assert rec["stream"]["chunks"] == 1


@pytest.mark.parametrize(("mode", "api", "outcome", "exit_"), _cases())
def test_matrix(fake_provider: FakeProvider, mode: str, api: str, outcome: str, exit_: str) -> None:
    """A patched google-genai gives what the unpatched one does and records one exact call."""
    bare = _run(fake_provider, mode, api, outcome, exit_)
    providers.patch("google_genai")
    with capture_records() as cap:
        seen = _run(fake_provider, mode, api, outcome, exit_)
        gc.collect()
        calls = cap.calls
    assert seen == bare
    assert len(calls) == 1
    _check(calls[0], api, outcome, exit_, bare)


def test_ids_are_the_sdks(fake_provider: FakeProvider) -> None:
    """The record's response id and served model are what the SDK's response says."""
    providers.patch_google_genai()
    c = _client(fake_provider)
    with capture_records() as cap:
        r = c.models.generate_content(model=MODEL, contents=PROMPT)
        s = list(c.models.generate_content_stream(model=MODEL, contents=PROMPT))
        calls = cap.calls
    assert (calls[0]["response_id"], calls[0]["served_model"]) == (r.response_id, r.model_version)
    assert (calls[1]["response_id"], calls[1]["served_model"]) == (
        s[0].response_id,
        s[0].model_version,
    )


@pytest.mark.skipif(not RETRIES, reason="this google-genai does not retry")
def test_429_retried_by_the_sdk_is_one_record(fake_provider: FakeProvider) -> None:
    """A 429 the SDK retries and then gets answered is one record, without error."""
    providers.patch_google_genai()
    fake_provider.script(status=429)
    with capture_records() as cap:
        c = _client(fake_provider, attempts=2)
        r = c.models.generate_content(model=MODEL, contents=PROMPT)
        calls = cap.calls
    assert len(fake_provider.requests) == 2
    assert len(calls) == 1
    assert calls[0]["response_id"] == r.response_id
    assert calls[0]["error"] is None


def test_429_not_retried_has_its_status(fake_provider: FakeProvider) -> None:
    """A 429 that reaches the caller is recorded with its status."""
    providers.patch_google_genai()
    fake_provider.script(status=429)
    c = _client(fake_provider)
    with capture_records() as cap, pytest.raises(errors.ClientError) as info:
        c.models.generate_content(model=MODEL, contents=PROMPT)
    assert info.value.code == 429
    assert cap.calls[0]["error"]["status"] == 429


def _routes(tmp_path: Path, fallback: bool = True) -> str:
    config = {
        "version": 1,
        "routes": {
            "support": {
                "match": {"dataset": "support"},
                "control": {"name": "base", "model": MODEL},
                "variants": [{"name": "ft", "model": TUNED, "fallback": fallback}],
                "assignment": {"unit": "user_id", "seed": "s", "bucket_version": 1},
                "rollout": {"variant_pct": 1.0, "holdout_pct": 0.0},
            }
        },
    }
    path = tmp_path / "routes.json"
    path.write_text(json.dumps(config))
    return str(path)


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("api", ["plain", "stream", "chat", "chat_stream"])
def test_routing_substitutes_model(
    fake_provider: FakeProvider, tmp_path: Path, mode: str, api: str
) -> None:
    """A variant route sends the tuned model; the record has requested and served models."""
    providers.patch_google_genai()
    with capture_records(routes=_routes(tmp_path)) as cap:
        with logos_shift.context(dataset="support", user_id="u1"):
            if mode == "sync":
                seen = _sync(fake_provider, api, "exhaust")
            else:
                seen = asyncio.run(_arun(fake_provider, api, "exhaust"))
        calls = cap.calls
    assert "raised" not in seen
    method = "generateContent" if api in ("plain", "chat") else "streamGenerateContent"
    assert fake_provider.requests[-1].path.endswith(f"/{TUNED}:{method}")
    (rec,) = calls
    assert (rec["requested_model"], rec["served_model"]) == (MODEL, TUNED)
    assert (rec["route"], rec["variant"], rec["fallback"]) == ("support", "ft", False)


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("api", ["plain", "stream", "chat_stream"])
def test_routing_fallback_to_control(
    fake_provider: FakeProvider, tmp_path: Path, mode: str, api: str
) -> None:
    """A failing tuned model is re-sent once on the control model; the record keeps its error."""
    providers.patch_google_genai()
    fake_provider.fail_model(TUNED, 503)
    with capture_records(routes=_routes(tmp_path)) as cap:
        with logos_shift.context(dataset="support", user_id="u1"):
            if mode == "sync":
                seen = _sync(fake_provider, api, "exhaust")
            else:
                seen = asyncio.run(_arun(fake_provider, api, "exhaust"))
        calls = cap.calls
    assert "raised" not in seen
    sent = [r.path.rsplit(":", 1)[0] for r in fake_provider.requests[-2:]]
    assert [p.endswith(f"/{TUNED}") for p in sent] == [True, False]
    assert sent[1].endswith(f"/models/{MODEL}")
    (rec,) = calls
    assert rec["fallback"] is True
    assert rec["served_model"] == MODEL
    assert rec["error"]["status"] == 503


def test_routing_no_fallback_raises(fake_provider: FakeProvider, tmp_path: Path) -> None:
    """Without fallback the tuned model's error reaches the caller unchanged."""
    providers.patch_google_genai()
    fake_provider.fail_model(TUNED, 500)
    with capture_records(routes=_routes(tmp_path, fallback=False)) as cap:
        with logos_shift.context(dataset="support", user_id="u1"):
            seen = _sync(fake_provider, "stream", "exhaust")
        calls = cap.calls
    assert seen == ("raised", "ServerError", 500)
    assert calls[0]["fallback"] is False
    assert calls[0]["error"]["status"] == 500
