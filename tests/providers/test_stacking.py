"""Stacking with OpenTelemetry's openai instrumentation, in either order."""

from __future__ import annotations

import warnings

import pytest

from logos_shift import _patching
from logos_shift.testing import FakeProvider, capture_records

with warnings.catch_warnings():  # the instrumentation's own pydantic deprecation warnings
    warnings.simplefilter("ignore")
    otel_openai = pytest.importorskip("opentelemetry.instrumentation.openai")
sdk_trace = pytest.importorskip("opentelemetry.sdk.trace")
export = pytest.importorskip("opentelemetry.sdk.trace.export.in_memory_span_exporter")
sdk_export = pytest.importorskip("opentelemetry.sdk.trace.export")

MSG = [{"role": "user", "content": "stack me"}]


@pytest.mark.parametrize("ours_first", [True, False])
def test_both_capture_in_either_order(fp: FakeProvider, ours_first: bool) -> None:
    """With OTel's instrumentation also active, both capture plain and streamed calls."""
    import openai

    exporter = export.InMemorySpanExporter()
    provider = sdk_trace.TracerProvider()
    provider.add_span_processor(sdk_export.SimpleSpanProcessor(exporter))
    inst = otel_openai.OpenAIInstrumentor()
    if ours_first:
        _patching.patch("openai")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        inst.instrument(tracer_provider=provider)
    if not ours_first:
        _patching.patch("openai")
    try:
        with (
            capture_records() as cap,
            openai.OpenAI(base_url=fp.openai_base_url, api_key="test") as client,
        ):
            r = client.chat.completions.create(model="gpt-4o-mini", messages=MSG)
            s = client.chat.completions.create(model="gpt-4o-mini", messages=MSG, stream=True)
            text = "".join(c.choices[0].delta.content or "" for c in s)
            calls = cap.calls
    finally:
        inst.uninstrument()
        _patching.unpatch("openai")
        provider.shutdown()
    assert r.choices[0].message.content == text == "Echo: stack me"
    assert [c["stream"] and c["stream"]["status"] for c in calls] == [None, "completed"]
    assert len(exporter.get_finished_spans()) >= 1
