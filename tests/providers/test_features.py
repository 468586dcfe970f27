"""Provider capture beyond the matrix: coverage of every patched method, usage,
tool calls, ids, retries, routing and fallback."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

import logos_shift
from logos_shift import providers
from logos_shift.testing import FakeProvider, capture_records
from tests.providers.scenarios import AN_MODEL, OA_MODEL

MSGS = [{"role": "user", "content": "hi there"}]


@pytest.fixture(autouse=True)
def _patched() -> Any:
    """Each test runs with both SDKs patched and ends unpatched."""
    providers.unpatch_all()
    providers.patch_all()
    yield
    providers.unpatch_all()


def _oa(fp: FakeProvider, **kw: Any) -> openai.OpenAI:
    kw.setdefault("max_retries", 0)
    return openai.OpenAI(base_url=fp.openai_base_url, api_key="k", **kw)


def _an(fp: FakeProvider) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=fp.anthropic_base_url, api_key="k", max_retries=0)


def test_openai_other_methods(fake_provider: FakeProvider) -> None:
    """responses create/stream/parse, chat parse and embeddings each give one sourced record."""
    with capture_records() as cap, _oa(fake_provider) as c:
        r = c.responses.create(model=OA_MODEL, input="alpha")
        with c.responses.stream(model=OA_MODEL, input="beta") as s:
            final = s.get_final_response()
        chat = (
            c.chat.completions if hasattr(c.chat.completions, "parse") else c.beta.chat.completions
        )
        p = chat.parse(model=OA_MODEL, messages=MSGS)
        e = c.embeddings.create(model="text-embedding-3-small", input="gamma")
        if not hasattr(c.responses, "parse"):  # openai < 1.70
            return
        rp = c.responses.parse(model=OA_MODEL, input="delta")
        calls = cap.calls
    assert [x["source"] for x in calls] == [
        "openai.responses", "openai.responses", "openai.chat.completions",
        "openai.embeddings", "openai.responses",
    ]  # fmt: skip
    assert calls[0]["response_id"] == r.id
    assert calls[0]["output"]["output"][0]["content"][0]["text"] == r.output_text
    assert calls[1]["stream"]["status"] == "completed"
    assert calls[1]["response_id"] == final.id
    assert calls[1]["usage"] == {"input_tokens": 1, "output_tokens": 2}
    assert calls[2]["output"]["choices"][0]["message"]["content"] == p.choices[0].message.content
    assert calls[3]["usage"]["input_tokens"] == 1
    assert calls[3]["output"]["data"][0]["embedding"] == e.data[0].embedding
    assert calls[4]["response_id"] == rp.id


def test_anthropic_beta_and_helpers(fake_provider: FakeProvider) -> None:
    """beta messages create/stream and the stream helpers (text_stream, until_done) are captured."""
    kw: dict[str, Any] = {"model": AN_MODEL, "max_tokens": 20, "messages": MSGS}
    with capture_records() as cap, _an(fake_provider) as a:
        m = a.beta.messages.create(**kw)
        with a.beta.messages.stream(**kw) as s:
            text = "".join(s.text_stream)
        with a.messages.stream(**kw) as s2:
            s2.until_done()
        calls = cap.calls
    assert [x["source"] for x in calls] == ["anthropic.beta.messages"] * 2 + ["anthropic.messages"]
    assert calls[0]["response_id"] == m.id
    assert calls[1]["output"]["content"][0]["text"] == text == "Echo: hi there"
    assert calls[2]["stream"] == {"status": "completed", "chunks": calls[2]["stream"]["chunks"]}


def test_ids_on_responses(fake_provider: FakeProvider) -> None:
    """Responses carry logos_shift_id without changing model_dump, and last_call_id matches."""
    with capture_records() as cap, _oa(fake_provider) as c:
        r = c.chat.completions.create(model=OA_MODEL, messages=MSGS)
        assert logos_shift.last_call_id() == r.logos_shift_id  # type: ignore[attr-defined]
        assert "logos_shift_id" not in r.model_dump()
        assert "logos_shift_id" not in r.model_dump_json()
        s = c.chat.completions.create(model=OA_MODEL, messages=MSGS, stream=True)
        list(s)
        sid = s.logos_shift_id  # type: ignore[attr-defined]
        calls = cap.calls
    assert calls[0]["id"] == r.logos_shift_id  # type: ignore[attr-defined]
    assert calls[0]["response_id"] == r.id
    assert calls[1]["id"] == sid


def test_stream_tool_calls_assembled_by_index(fake_provider: FakeProvider) -> None:
    """Parallel tool calls split over deltas are rebuilt per index with full arguments."""
    tools = [{"name": "f", "arguments": {"x": 1, "y": "two"}}, {"name": "g", "arguments": {"z": 3}}]
    fake_provider.script(tool_calls=tools)
    fake_provider.script(tool_calls=tools[:1])
    with capture_records() as cap, _oa(fake_provider) as c, _an(fake_provider) as a:
        list(c.chat.completions.create(model=OA_MODEL, messages=MSGS, stream=True))
        with a.messages.stream(model=AN_MODEL, max_tokens=20, messages=MSGS) as s:
            s.until_done()
        calls = cap.calls
    got = calls[0]["output"]["choices"][0]["message"]["tool_calls"]
    assert [(t["function"]["name"], json.loads(t["function"]["arguments"])) for t in got] == [
        ("f", {"x": 1, "y": "two"}),
        ("g", {"z": 3}),
    ]
    assert calls[0]["output"]["choices"][0]["finish_reason"] == "tool_calls"
    blocks = [b for b in calls[1]["output"]["content"] if b["type"] == "tool_use"]
    assert [(b["name"], b["input"]) for b in blocks] == [("f", {"x": 1, "y": "two"})]
    assert calls[1]["output"]["stop_reason"] == "tool_use"


def test_include_usage_only_when_enabled(fake_provider: FakeProvider) -> None:
    """include_usage is injected only with inject_stream_usage, and its extra chunk is hidden."""
    with capture_records() as cap, _oa(fake_provider) as c:
        chunks = list(c.chat.completions.create(model=OA_MODEL, messages=MSGS, stream=True))
        assert "stream_options" not in fake_provider.requests[-1].body
        assert cap.calls[0]["usage"] is None
    with capture_records(inject_stream_usage=True) as cap, _oa(fake_provider) as c:
        chunks2 = list(c.chat.completions.create(model=OA_MODEL, messages=MSGS, stream=True))
        assert fake_provider.requests[-1].body["stream_options"] == {"include_usage": True}
        rec = cap.calls[0]
    assert all(ch.choices for ch in chunks2)
    assert len(chunks2) == len(chunks)
    assert rec["usage"] == {"input_tokens": 2, "output_tokens": 3}
    assert rec["stream"]["chunks"] == len(chunks) + 1


def test_user_asked_include_usage_is_kept(fake_provider: FakeProvider) -> None:
    """A user's own include_usage request sees the usage chunk as usual."""
    with capture_records(inject_stream_usage=True) as cap, _oa(fake_provider) as c:
        chunks = list(
            c.chat.completions.create(
                model=OA_MODEL, messages=MSGS, stream=True, stream_options={"include_usage": True}
            )
        )
        rec = cap.calls[0]
    assert chunks[-1].choices == []
    assert rec["usage"] == {"input_tokens": 2, "output_tokens": 3}


def test_sdk_retry_gives_one_record(fake_provider: FakeProvider) -> None:
    """A 429 retried by the SDK and then answered is one record, not two."""
    fake_provider.script(status=429, retry_after=0.01)
    with capture_records() as cap, _oa(fake_provider, max_retries=2) as c:
        r = c.chat.completions.create(model=OA_MODEL, messages=MSGS)
        calls = cap.calls
    assert len(fake_provider.requests) == 2
    assert len(calls) == 1
    assert calls[0]["response_id"] == r.id
    assert calls[0]["error"] is None


def test_full_buffer_call_returns(fake_provider: FakeProvider) -> None:
    """With the record queue full the call still returns its normal result."""
    with capture_records(max_queue_items=1) as cap, _oa(fake_provider) as c:
        cap.client.flush(timeout=5)
        texts = [
            c.chat.completions.create(model=OA_MODEL, messages=MSGS).choices[0].message.content
            for _ in range(5)
        ]
    assert texts == ["Echo: hi there"] * 5


def test_no_instance_no_capture(fake_provider: FakeProvider) -> None:
    """Without any LogosShift instance a patched call is a plain passthrough."""
    with _oa(fake_provider) as c:
        r = c.chat.completions.create(model=OA_MODEL, messages=MSGS)
    assert not hasattr(r, "logos_shift_id")


def test_async_responses_and_embeddings(fake_provider: FakeProvider) -> None:
    """Async responses (stream and not) and embeddings are captured like the sync ones."""

    async def go() -> list[str]:
        async with openai.AsyncOpenAI(
            base_url=fake_provider.openai_base_url, api_key="k", max_retries=0
        ) as c:
            await c.responses.create(model=OA_MODEL, input="a")
            s = await c.responses.create(model=OA_MODEL, input="b", stream=True)
            async for _ in s:
                pass
            await c.embeddings.create(model="text-embedding-3-small", input="c")
        return ["ok"]

    with capture_records() as cap:
        asyncio.run(go())
        calls = cap.calls
    assert [(x["source"], (x["stream"] or {}).get("status")) for x in calls] == [
        ("openai.responses", None),
        ("openai.responses", "completed"),
        ("openai.embeddings", None),
    ]


def _routes(tmp_path: Path, fallback: bool = True) -> str:
    config = {
        "version": 1,
        "routes": {
            "support": {
                "match": {"dataset": "support"},
                "control": {"name": "base", "model": OA_MODEL},
                "variants": [{"name": "ft", "model": "ft:gpt-4o-mini:x", "fallback": fallback}],
                "assignment": {"unit": "user_id", "seed": "s", "bucket_version": 1},
                "rollout": {"variant_pct": 1.0, "holdout_pct": 0.0},
            }
        },
    }
    path = tmp_path / "routes.json"
    path.write_text(json.dumps(config))
    return str(path)


def test_routing_substitutes_model(fake_provider: FakeProvider, tmp_path: Path) -> None:
    """A variant route sends the variant model and records requested and served models."""
    with capture_records(routes=_routes(tmp_path)) as cap, _oa(fake_provider) as c:
        with logos_shift.context(dataset="support", user_id="u1"):
            r = c.chat.completions.create(model=OA_MODEL, messages=MSGS)
        rec = cap.calls[0]
    assert r.model == "ft:gpt-4o-mini:x"
    assert fake_provider.requests[-1].body["model"] == "ft:gpt-4o-mini:x"
    assert (rec["requested_model"], rec["served_model"]) == (OA_MODEL, "ft:gpt-4o-mini:x")
    assert (rec["route"], rec["variant"], rec["fallback"]) == ("support", "ft", False)


def test_routing_fallback_to_control(fake_provider: FakeProvider, tmp_path: Path) -> None:
    """A failing variant is re-sent once on the control model; the record keeps its error."""
    fake_provider.fail_model("ft:gpt-4o-mini:x", 500)
    with capture_records(routes=_routes(tmp_path)) as cap, _oa(fake_provider) as c:
        with logos_shift.context(dataset="support", user_id="u1"):
            r = c.chat.completions.create(model=OA_MODEL, messages=MSGS)
            s = c.chat.completions.create(model=OA_MODEL, messages=MSGS, stream=True)
            text = "".join(ch.choices[0].delta.content or "" for ch in s)
        calls = cap.calls
    assert r.model == OA_MODEL
    assert text == "Echo: hi there"
    for rec in calls:
        assert rec["fallback"] is True
        assert rec["served_model"] == OA_MODEL
        assert rec["error"]["status"] == 500


def test_routing_no_fallback_raises(fake_provider: FakeProvider, tmp_path: Path) -> None:
    """Without fallback the variant's error reaches the caller unchanged."""
    fake_provider.fail_model("ft:gpt-4o-mini:x", 500)
    with capture_records(routes=_routes(tmp_path, fallback=False)) as cap, _oa(fake_provider) as c:
        with (
            logos_shift.context(dataset="support", user_id="u1"),
            pytest.raises(openai.InternalServerError),
        ):
            c.chat.completions.create(model=OA_MODEL, messages=MSGS)
        rec = cap.calls[0]
    assert rec["fallback"] is False
    assert rec["error"]["type"] == "InternalServerError"


def test_anthropic_stream_helper_routing(fake_provider: FakeProvider, tmp_path: Path) -> None:
    """messages.stream() bypasses create but is routed and falls back too."""
    path = _routes(tmp_path).replace(OA_MODEL, AN_MODEL)
    config = json.loads(Path(_routes(tmp_path)).read_text())
    config["routes"]["support"]["control"]["model"] = AN_MODEL
    Path(path).write_text(json.dumps(config))
    fake_provider.fail_model("ft:gpt-4o-mini:x", 500)
    with capture_records(routes=path) as cap, _an(fake_provider) as a:
        with (
            logos_shift.context(dataset="support", user_id="u1"),
            a.messages.stream(model=AN_MODEL, max_tokens=20, messages=MSGS) as s,
        ):
            msg = s.get_final_message()
        rec = cap.calls[0]
    assert msg.model == AN_MODEL
    assert rec["fallback"] is True
    assert rec["served_model"] == AN_MODEL
    assert rec["stream"]["status"] == "completed"


def test_raw_response_stream(fake_provider: FakeProvider) -> None:
    """A stream read through with_raw_response(...).parse() is captured once, completed."""
    with capture_records() as cap, _oa(fake_provider) as c:
        raw = c.chat.completions.with_raw_response.create(
            model=OA_MODEL, messages=MSGS, stream=True
        )
        stream = raw.parse()
        assert isinstance(stream, openai.Stream)
        text = "".join(ch.choices[0].delta.content or "" for ch in stream)
        calls = cap.calls
    assert text == "Echo: hi there"
    assert len(calls) == 1
    assert calls[0]["stream"]["status"] == "completed"
    assert calls[0]["output"]["choices"][0]["message"]["content"] == text


@pytest.mark.parametrize("otel", [True, False])
def test_anthropic_native_tracing_on_or_off(fake_provider: FakeProvider, otel: bool) -> None:
    """anthropic's own OpenTelemetry spans on or off, the captures are the same."""
    if "open_telemetry" not in anthropic.Anthropic.__init__.__code__.co_varnames:
        pytest.skip("this anthropic version has no native OpenTelemetry")
    opt: Any = None if otel else False
    kw: dict[str, Any] = {"model": AN_MODEL, "max_tokens": 20, "messages": MSGS}
    with (
        capture_records() as cap,
        anthropic.Anthropic(
            base_url=fake_provider.anthropic_base_url, api_key="k", max_retries=0,
            open_telemetry=opt,
        ) as a,
    ):  # fmt: skip
        m = a.messages.create(**kw)
        with a.messages.stream(**kw) as s:
            text = s.get_final_text()
        calls = cap.calls
    assert calls[0]["response_id"] == m.id
    assert calls[1]["output"]["content"][0]["text"] == text
    assert calls[1]["usage"] == {"input_tokens": 2, "output_tokens": 3}
