"""The capture rules of issue 11 on plain SDK use (the framework tier checks them under
frameworks): placeholders left out, client-side refusals unrecorded, cancelled calls
recorded, bound methods taken before patching captured, warnings at the caller's line,
no unawaited coroutine of ours, and the id kept out of the response's data."""

from __future__ import annotations

import asyncio
import functools
import gc
import json
import warnings
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
from anthropic.resources.messages import messages as _anthropic_messages

import logos_shift
from logos_shift import providers
from logos_shift.testing import FakeProvider, capture_records
from tests.conftest import placeholder_fields
from tests.providers.scenarios import AN_MODEL, OA_MODEL

MSGS = [{"role": "user", "content": "hi there"}]
#: ``omit`` (openai >= 1.9x, anthropic >= 0.6x); older releases have only ``NOT_GIVEN``.
OA_OMIT: Any = getattr(openai, "omit", openai.NOT_GIVEN)
AN_OMIT: Any = getattr(anthropic, "omit", anthropic.NOT_GIVEN)
#: A placeholder inside a typed dict: the SDK leaves it out at any depth (since ``omit``).
NESTED: dict[str, Any] = {"strict": openai.omit} if hasattr(openai, "omit") else {}


@pytest.fixture(autouse=True)
def _patched() -> Any:
    """Each test runs with both SDKs patched and ends unpatched."""
    providers.unpatch_all()
    providers.patch_all()
    yield
    providers.unpatch_all()


def _oa(fp: FakeProvider, is_async: bool = False) -> Any:
    cls: Any = openai.AsyncOpenAI if is_async else openai.OpenAI
    return cls(base_url=fp.openai_base_url, api_key="k", max_retries=0)


def _an(fp: FakeProvider, is_async: bool = False) -> Any:
    cls: Any = anthropic.AsyncAnthropic if is_async else anthropic.Anthropic
    return cls(base_url=fp.anthropic_base_url, api_key="k", max_retries=0)


def _no_placeholders(rec: dict[str, Any]) -> None:
    text = json.dumps(rec)
    for name in ("Omit", "NOT_GIVEN", "NotGiven"):
        assert name not in text
    assert placeholder_fields(rec) == []


# -- 1. placeholders ----------------------------------------------------------


def test_placeholder_arguments_are_left_out_of_the_input(fake_provider: FakeProvider) -> None:
    """omit / NOT_GIVEN arguments, top-level or nested, are left out, as out of the body."""
    with capture_records() as cap, _oa(fake_provider) as c, _an(fake_provider) as a:
        c.chat.completions.create(
            model=OA_MODEL,
            messages=MSGS,
            temperature=OA_OMIT,
            top_p=openai.NOT_GIVEN,
            tools=[{"type": "function", "function": {"name": "f", **NESTED}}],
        )
        a.messages.create(model=AN_MODEL, max_tokens=32, messages=MSGS, system=AN_OMIT)
        calls = cap.calls
    assert set(calls[0]["input"]) == {"model", "messages", "tools"}
    assert calls[0]["input"]["tools"] == fake_provider.requests[0].body["tools"]
    assert set(calls[1]["input"]) == {"model", "max_tokens", "messages"}
    for rec in calls:
        _no_placeholders(rec)


def test_openai_stream_helpers_record_only_what_they_send(fake_provider: FakeProvider) -> None:
    """chat.completions.stream() passes omit for every unset option: none is recorded."""
    stream = getattr(openai.OpenAI(api_key="k").chat.completions, "stream", None)
    if stream is None:
        pytest.skip("openai 1.x: the stream helper lives in beta")
    with capture_records() as cap, _oa(fake_provider) as c:
        with c.chat.completions.stream(model=OA_MODEL, messages=MSGS) as s:
            s.until_done()
        calls = cap.calls
    (rec,) = calls
    assert set(rec["input"]) <= set(fake_provider.requests[-1].body)
    _no_placeholders(rec)


# -- 2. with_streaming_response streams ----------------------------------------


def test_async_streaming_response_stream_is_recorded(fake_provider: FakeProvider) -> None:
    """AsyncOpenAI with_streaming_response + stream=True (openai-agents): a completed stream."""

    async def go() -> tuple[str, list[dict[str, Any]]]:
        with capture_records() as cap:
            async with (
                _oa(fake_provider, is_async=True) as c,
                c.responses.with_streaming_response.create(
                    model=OA_MODEL, input="hi there", stream=True
                ) as resp,
            ):
                stream = await resp.parse()
                deltas = [e.delta async for e in stream if e.type.endswith("text.delta")]
            return "".join(deltas), cap.calls

    text, calls = asyncio.run(go())
    (rec,) = calls
    assert rec["stream"]["status"] == "completed"
    assert rec["response_id"].startswith("resp_")
    assert text
    assert text in json.dumps(rec["output"])


def test_streaming_response_stream_cut_short_is_an_error(fake_provider: FakeProvider) -> None:
    """A dropped connection under with_streaming_response is recorded as a stream error."""
    fake_provider.script(disconnect_after_chunks=2)
    with capture_records() as cap, _oa(fake_provider) as c:
        with (
            pytest.raises(Exception) as info,  # whatever httpx raises for the cut
            c.chat.completions.with_streaming_response.create(
                model=OA_MODEL, messages=MSGS, stream=True
            ) as resp,
        ):
            list(resp.parse())
        calls = cap.calls
    (rec,) = calls
    assert rec["stream"]["status"] == "error"
    assert rec["error"]["type"] == type(info.value).__name__


def test_streaming_response_stream_left_early_is_partial(fake_provider: FakeProvider) -> None:
    """Leaving the with block after one chunk: one partial stream record."""
    with capture_records() as cap, _oa(fake_provider) as c:
        with c.chat.completions.with_streaming_response.create(
            model=OA_MODEL, messages=MSGS, stream=True
        ) as resp:
            next(iter(resp.parse()))
        calls = cap.calls
    (rec,) = calls
    assert rec["stream"] == {"status": "partial", "chunks": 1}


# -- 3. client-side refusals --------------------------------------------------


def test_a_call_the_sdk_refuses_before_sending_records_nothing(fake_provider: FakeProvider) -> None:
    """anthropic refuses a non-streaming call with a huge max_tokens client-side: no record."""
    with capture_records() as cap, _an(fake_provider) as a:
        with pytest.raises(ValueError, match=r"[Ss]treaming"):
            a.messages.create(model=AN_MODEL, max_tokens=1_000_000, messages=MSGS)
        with pytest.raises(TypeError):
            a.messages.create(model=AN_MODEL, messages=MSGS)  # type: ignore[call-arg]
        calls = cap.calls
    assert fake_provider.requests == []
    assert calls == []


def test_refusals_do_not_trip_a_routed_variants_breaker(
    fake_provider: FakeProvider, tmp_path: Path
) -> None:
    """Refused calls of a routed variant are not failures: its breaker stays closed."""
    route = {
        "match": {"dataset": "support"},
        "control": {"name": "base", "model": AN_MODEL},
        "variants": [{"name": "ft", "model": "claude-ft", "fallback": True}],
        "assignment": {"unit": "user_id", "seed": "s", "bucket_version": 1},
        "rollout": {"variant_pct": 1.0, "holdout_pct": 0.0},
        "breaker": {"consecutive_errors": 2},
    }
    path = tmp_path / "routes.json"
    path.write_text(json.dumps({"version": 1, "routes": {"support": route}}))
    with capture_records(routes=str(path)) as cap, _an(fake_provider) as a:
        with logos_shift.context(dataset="support", user_id="u1"):
            for _ in range(3):
                with pytest.raises(ValueError, match=r"[Ss]treaming"):
                    a.messages.create(model=AN_MODEL, max_tokens=1_000_000, messages=MSGS)
            a.messages.create(model=AN_MODEL, max_tokens=32, messages=MSGS)
        calls = cap.calls
    assert [r.body["model"] for r in fake_provider.requests] == ["claude-ft"]
    assert [(r["variant"], r["error"]) for r in calls] == [("ft", None)]


def test_an_error_after_sending_is_still_recorded(fake_provider: FakeProvider) -> None:
    """A connection error (the request path was entered) is recorded, as an HTTP error is."""
    fake_provider.script(status=500)
    with capture_records() as cap:
        with _oa(fake_provider) as c, pytest.raises(openai.InternalServerError):
            c.chat.completions.create(model=OA_MODEL, messages=MSGS)
        dead = openai.OpenAI(base_url="http://127.0.0.1:9/v1", api_key="k", max_retries=0)
        with dead, pytest.raises(openai.APIConnectionError):
            dead.chat.completions.create(model=OA_MODEL, messages=MSGS)
        calls = cap.calls
    assert [r["error"]["type"] for r in calls] == ["InternalServerError", "APIConnectionError"]


# -- 4. bound methods taken before patching -----------------------------------


def test_bound_method_taken_before_patching_is_captured(fake_provider: FakeProvider) -> None:
    """A bound create kept before patch_all() (instructor's from_openai) is captured, then not."""

    class Holder:
        pass

    def closing_over(fn: Any) -> Any:
        return lambda **kw: fn(**kw)

    providers.unpatch_all()
    client = _oa(fake_provider)
    holder = Holder()
    holder.create = client.chat.completions.create  # type: ignore[attr-defined]
    kept = {
        "attribute": lambda **kw: holder.create(**kw),  # type: ignore[attr-defined]
        "closure": closing_over(client.chat.completions.create),
        "partial": functools.partial(client.chat.completions.create, model=OA_MODEL),
    }
    held_in_list = [client.chat.completions.create]
    kept["list"] = lambda **kw: held_in_list[0](**kw)
    providers.patch_all()
    for how, create in kept.items():
        with capture_records() as cap:
            create(model=OA_MODEL, messages=MSGS)
            calls = cap.calls
        assert [r["source"] for r in calls] == ["openai.chat.completions"], how
    providers.unpatch_all()
    for how, create in kept.items():
        with capture_records() as cap:
            create(model=OA_MODEL, messages=MSGS)
            assert cap.calls == [], how
    client.close()


# -- 5. cancelled calls -------------------------------------------------------


def test_cancelled_async_call_is_recorded_as_cancelled(fake_provider: FakeProvider) -> None:
    """asyncio.wait_for cancelling an awaited create: a record with error type CancelledError."""
    fake_provider.script(latency=2.0)

    async def go() -> list[dict[str, Any]]:
        with capture_records() as cap:
            async with _oa(fake_provider, is_async=True) as c:
                with pytest.raises(asyncio.TimeoutError):
                    await asyncio.wait_for(
                        c.chat.completions.create(model=OA_MODEL, messages=MSGS), 0.2
                    )
            return cap.calls

    (rec,) = asyncio.run(go())
    assert rec["error"]["type"] == "CancelledError"
    assert rec["stream"] is None


def test_cancelled_async_stream_is_recorded_as_cancelled(fake_provider: FakeProvider) -> None:
    """A task cancelled while it reads a stream: stream status error, error CancelledError."""
    fake_provider.script(chunks=20, chunk_delay=0.1)

    async def go() -> list[dict[str, Any]]:
        with capture_records() as cap:
            async with _an(fake_provider, is_async=True) as a:

                async def read() -> None:
                    s = await a.messages.create(
                        model=AN_MODEL, max_tokens=64, messages=MSGS, stream=True
                    )
                    async for _ in s:
                        pass

                task = asyncio.ensure_future(read())
                await asyncio.sleep(0.35)
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
            return cap.calls

    (rec,) = asyncio.run(go())
    assert rec["stream"]["status"] == "error"
    assert rec["error"]["type"] == "CancelledError"


# -- 6. warnings at the caller's line -----------------------------------------


@pytest.mark.parametrize("is_async", [False, True])
def test_sdk_warning_names_the_callers_line(fake_provider: FakeProvider, is_async: bool) -> None:
    """anthropic's deprecated-model warning names the same file and line patched as unpatched
    (this file, for the sync client; the SDK's stacklevel counts no await chain)."""
    model = next(iter(_anthropic_messages.DEPRECATED_MODELS))

    async def acall() -> Any:
        async with _an(fake_provider, is_async=True) as a:
            return await a.messages.create(model=model, max_tokens=32, messages=MSGS)

    def where() -> tuple[str, int]:
        with capture_records(), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if is_async:
                asyncio.run(acall())
            else:
                with _an(fake_provider) as a:
                    a.messages.create(model=model, max_tokens=32, messages=MSGS)
        found = [w for w in caught if issubclass(w.category, DeprecationWarning)]
        assert found
        return found[0].filename, found[0].lineno

    patched = where()
    providers.unpatch_all()
    assert patched == where()
    assert "logos_shift" not in patched[0]
    if not is_async:
        assert patched[0] == __file__


# -- 7. no unawaited coroutine ------------------------------------------------


def test_unused_async_message_stream_leaves_no_coroutine_of_ours(
    fake_provider: FakeProvider,
) -> None:
    """AsyncAnthropic().messages.stream(...) never entered: no 'never awaited' warning of ours."""

    def unawaited() -> list[str]:
        a = _an(fake_provider, is_async=True)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            manager = a.messages.stream(model=AN_MODEL, max_tokens=32, messages=MSGS)
            del manager
            gc.collect()
        return sorted(str(w.message) for w in caught if "never awaited" in str(w.message))

    with capture_records():
        patched = unawaited()
    providers.unpatch_all()
    assert patched == unawaited()  # the SDK's own, if any


# -- 8. the id stays out of the response's data --------------------------------


def test_record_id_is_not_part_of_the_response_data(fake_provider: FakeProvider) -> None:
    """dict(), vars(), iteration and model_dump() show the SDK's fields; the id still reads."""
    with capture_records() as cap, _oa(fake_provider) as c, _an(fake_provider) as a:
        r1 = c.chat.completions.create(model=OA_MODEL, messages=MSGS)
        r2 = a.messages.create(model=AN_MODEL, max_tokens=32, messages=MSGS)
        calls = cap.calls
    for resp, rec in zip((r1, r2), calls, strict=True):
        assert resp.logos_shift_id == rec["id"]
        assert "logos_shift_id" not in dict(resp)
        assert "logos_shift_id" not in vars(resp)
        assert "logos_shift_id" not in [k for k, _ in resp]
        assert "logos_shift_id" not in resp.model_dump()
        assert resp == type(resp).model_validate(resp.model_dump())
    providers.unpatch_all()
    with _oa(fake_provider) as c:
        plain = c.chat.completions.create(model=OA_MODEL, messages=MSGS)
    assert not hasattr(plain, "logos_shift_id")
