"""patch/unpatch semantics, clients built before patching, failure injection, stacking."""

from __future__ import annotations

import dataclasses
import sys
from typing import Any

import openai
import pytest
import wrapt
from openai.resources.chat.completions.completions import Completions

from logos_shift import _guard, providers
from logos_shift._capture import call
from logos_shift.providers import _patching
from logos_shift.providers import openai as _openai
from logos_shift.testing import FakeProvider, capture_records
from tests.providers.scenarios import run_async, run_sync

MSGS = [{"role": "user", "content": "hi there"}]


@pytest.fixture(autouse=True)
def _unpatched() -> Any:
    """Each test starts and ends with nothing patched."""
    providers.unpatch_all()
    yield
    providers.unpatch_all()


def _our_layers(obj: Any) -> int:
    n = 0
    while obj is not None:
        n += providers.is_ours(obj)
        obj = getattr(obj, "__wrapped__", None)
    return n


def test_patch_twice_and_repatch_leave_one_wrapper() -> None:
    """Patching twice is a no-op and patch → unpatch → patch leaves exactly one wrapper."""
    original = vars(Completions)["create"]
    providers.patch_openai()
    providers.patch_openai()
    assert _our_layers(vars(Completions)["create"]) == 1
    providers.unpatch_openai()
    assert vars(Completions)["create"] is original
    providers.patch_openai()
    assert _our_layers(vars(Completions)["create"]) == 1
    assert providers.patched() == ["openai"]


def test_unpatch_stops_capture(fake_provider: FakeProvider) -> None:
    """After unpatch_all, calls are not captured."""
    providers.patch_all()
    providers.unpatch_all()
    with (
        capture_records() as cap,
        openai.OpenAI(base_url=fake_provider.openai_base_url, api_key="k", max_retries=0) as c,
    ):
        c.chat.completions.create(model="m", messages=MSGS)
        assert cap.calls == []


def test_missing_sdk(monkeypatch: pytest.MonkeyPatch) -> None:
    """A named missing SDK raises a clear ImportError; patch_all skips it quietly."""
    monkeypatch.setitem(sys.modules, "anthropic", None)
    with pytest.raises(ImportError, match="needs the 'anthropic' package"):
        providers.patch_anthropic()
    patched = providers.patch_all()
    assert "openai" in patched
    assert "anthropic" not in patched


def test_unsupported_version_warns_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """An SDK outside the supported range warns once and patches nothing."""
    monkeypatch.setattr(
        _openai, "PROVIDER", dataclasses.replace(_openai.PROVIDER, min_version=(99,))
    )
    monkeypatch.setattr(_patching, "_warned", set())
    with pytest.warns(UserWarning, match="supports openai >=99"):
        providers.patch_openai()
    providers.patch_openai()  # no second warning (filterwarnings=error would fail)
    assert providers.patched() == []
    assert _our_layers(vars(Completions)["create"]) == 0


def test_clients_created_before_patching(fake_provider: FakeProvider) -> None:
    """A client built, and its with_raw_response touched, before patching is captured."""
    c = openai.OpenAI(base_url=fake_provider.openai_base_url, api_key="k", max_retries=0)
    raw = c.chat.completions.with_raw_response
    streaming = c.chat.completions.with_streaming_response
    providers.patch_openai()
    with capture_records() as cap:
        r = raw.create(model="m", messages=MSGS).parse()
        c.chat.completions.create(model="m", messages=MSGS)
        with streaming.create(model="m", messages=MSGS) as resp:
            resp.read()
        calls = cap.calls
    assert len(calls) == 3
    assert calls[0]["response_id"] == r.id
    providers.unpatch_openai()
    with capture_records() as cap:
        raw.create(model="m", messages=MSGS).parse()
        assert cap.calls == []
    c.close()


SCENARIOS = [
    ("openai", "sync", "plain"), ("openai", "sync", "stream"), ("openai", "sync", "helper"),
    ("openai", "sync", "raw"), ("openai", "async", "stream"), ("anthropic", "sync", "plain"),
    ("anthropic", "sync", "helper"), ("anthropic", "async", "helper"),
    ("anthropic", "sync", "stream"),
]  # fmt: skip


_RUN = {"sync": run_sync, "async": run_async}


@pytest.mark.parametrize("step", call.STEPS)
def test_failure_injection(fake_provider: FakeProvider, step: str) -> None:
    """Each internal step raising in turn leaves every user-visible result unchanged."""
    for outcome in ("success", "error"):
        bare = []
        for sdk, mode, api in SCENARIOS:
            if outcome == "error":
                fake_provider.script(status=500)
            bare.append(
                (run_sync if mode == "sync" else run_async)(sdk, fake_provider, api, "exhaust")
            )
        providers.patch_all()
        _guard.FAULTS.add(step)
        seen = []
        with capture_records():
            for sdk, mode, api in SCENARIOS:
                if outcome == "error":
                    fake_provider.script(status=500)
                seen.append(
                    (run_sync if mode == "sync" else run_async)(sdk, fake_provider, api, "exhaust")
                )
        _guard.FAULTS.clear()
        providers.unpatch_all()
        assert seen == bare


def test_same_exception_object(fake_provider: FakeProvider) -> None:
    """The SDK's exception reaches the caller as the very object the SDK raised."""
    caught: list[BaseException] = []

    def spy(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        try:
            return wrapped(*args, **kwargs)
        except Exception as exc:
            caught.append(exc)
            raise

    original = vars(Completions)["create"]
    wrapt.wrap_function_wrapper(Completions, "create", spy)  # under ours: sees the SDK's raise
    providers.patch_openai()
    fake_provider.script(status=500)
    try:
        with (
            capture_records() as cap,
            openai.OpenAI(base_url=fake_provider.openai_base_url, api_key="k", max_retries=0) as c,
            pytest.raises(openai.InternalServerError) as info,
        ):
            c.chat.completions.create(model="m", messages=MSGS)
        calls = cap.calls
    finally:
        providers.unpatch_openai()
        Completions.create = original  # type: ignore[method-assign]
    assert caught == [info.value]
    assert caught[0] is info.value
    assert calls[0]["error"]["status"] == 500


# Importing the instrumentation package triggers a pydantic deprecation warning.
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_stacking_with_opentelemetry(fake_provider: FakeProvider) -> None:
    """With OpenTelemetry's openai instrumentation active, both capture, in either order."""
    otel = pytest.importorskip("opentelemetry.instrumentation.openai")
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    for first_ours in (True, False):
        inst = otel.OpenAIInstrumentor()
        if first_ours:
            providers.patch_openai()
        inst.instrument(tracer_provider=tp)
        if not first_ours:
            providers.patch_openai()
        try:
            with (
                capture_records() as cap,
                openai.OpenAI(
                    base_url=fake_provider.openai_base_url, api_key="k", max_retries=0
                ) as c,
            ):
                r = c.chat.completions.create(model="m", messages=MSGS)
                s = c.chat.completions.create(model="m", messages=MSGS, stream=True)
                text = "".join(ch.choices[0].delta.content or "" for ch in s)
                calls = cap.calls
        finally:
            inst.uninstrument()
            providers.unpatch_openai()
        assert r.choices[0].message.content == text == "Echo: hi there"
        assert next(x["stream"] for x in calls) is None
        assert calls[1]["stream"]["status"] == "completed"
        assert len(exporter.get_finished_spans()) >= 2
        exporter.clear()
