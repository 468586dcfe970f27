"""Added cost of ``patch_openai()`` per call, against the bare SDK, in one interleaved run.

Run: ``.venv/bin/python benchmarks/bench_providers.py [--n 400]``

For each transport (in-process ``httpx2.MockTransport``; the local fake server
over a socket), each mode (sync, async) and each kind (non-stream; stream of 50
chunks), calls alternate between the bare SDK (the original, unwrapped method
called directly) and the instrumented method, so both see the same machine
state.  Latency: p50/p99 of the per-call wall time, instrumented minus bare.
CPU: ``process_time`` (all threads, so the background serialisation and JSONL
write are included; the instrumented blocks end with ``flush()``) per call,
instrumented minus bare.  When ``opentelemetry-instrumentation-openai`` is
installed, the same is measured for it in a second phase.  Prints markdown.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2
import openai
from openai.resources.chat.completions.completions import AsyncCompletions, Completions

import logos_shift
from logos_shift import _instrument
from logos_shift.testing import FakeProvider

MSGS = [{"role": "user", "content": "benchmark prompt with a few words in it"}]
CHUNKS = 50


def _completion() -> bytes:
    return json.dumps({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": "hello " * 20}}],
        "usage": {"prompt_tokens": 8, "completion_tokens": 20, "total_tokens": 28},
    }).encode()  # fmt: skip


def _sse() -> bytes:
    out = []
    for i in range(CHUNKS):
        chunk = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1,
                 "model": "gpt-4o-mini", "choices": [{"index": 0, "delta": {"content": f"w{i} "},
                 "finish_reason": "stop" if i == CHUNKS - 1 else None}]}  # fmt: skip
        out.append(b"data: " + json.dumps(chunk).encode() + b"\n\n")
    out.append(b"data: [DONE]\n\n")
    return b"".join(out)


JSON_BODY, SSE_BODY = _completion(), _sse()


def _handler(request: Any) -> Any:
    if b'"stream":true' in request.content or b'"stream": true' in request.content:
        return httpx2.Response(200, content=SSE_BODY, headers={"content-type": "text/event-stream"})
    return httpx2.Response(200, content=JSON_BODY, headers={"content-type": "application/json"})


def _clients(transport: str, base_url: str) -> tuple[openai.OpenAI, openai.AsyncOpenAI]:
    if transport == "mock":
        sync = openai.OpenAI(api_key="k", base_url="http://bench/v1",
                             http_client=openai.DefaultHttpxClient(
                                 transport=httpx2.MockTransport(_handler)))  # fmt: skip
        asy = openai.AsyncOpenAI(api_key="k", base_url="http://bench/v1",
                                 http_client=openai.DefaultAsyncHttpxClient(
                                     transport=httpx2.MockTransport(_handler)))  # fmt: skip
        return sync, asy
    return (openai.OpenAI(api_key="k", base_url=base_url, max_retries=0),
            openai.AsyncOpenAI(api_key="k", base_url=base_url, max_retries=0))  # fmt: skip


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def _measure_sync(call_bare: Callable[[], Any], call_inst: Callable[[], Any], n: int,
                  flush: Callable[[], Any]) -> dict[str, float]:  # fmt: skip
    bare: list[float] = []
    inst: list[float] = []
    cpu_bare = cpu_inst = 0.0
    block = 20
    for _ in range(n // block):
        c0 = time.process_time()
        for _ in range(block):
            t = time.perf_counter()
            call_bare()
            bare.append(time.perf_counter() - t)
        c1 = time.process_time()
        for _ in range(block):
            t = time.perf_counter()
            call_inst()
            inst.append(time.perf_counter() - t)
        flush()
        c2 = time.process_time()
        cpu_bare += c1 - c0
        cpu_inst += c2 - c1
    return _summary(bare, inst, cpu_bare, cpu_inst)


def _summary(bare: list[float], inst: list[float], cb: float, ci: float) -> dict[str, float]:
    n = len(bare)
    return {
        "bare_p50": statistics.median(bare) * 1e6,
        "add_p50": (statistics.median(inst) - statistics.median(bare)) * 1e6,
        "add_p99": (_pct(inst, 0.99) - _pct(bare, 0.99)) * 1e6,
        "add_cpu": (ci - cb) / n * 1e6,
    }


async def _measure_async(call_bare: Callable[[], Any], call_inst: Callable[[], Any], n: int,
                         flush: Callable[[], Any]) -> dict[str, float]:  # fmt: skip
    bare: list[float] = []
    inst: list[float] = []
    cpu_bare = cpu_inst = 0.0
    block = 20
    for _ in range(n // block):
        c0 = time.process_time()
        for _ in range(block):
            t = time.perf_counter()
            await call_bare()
            bare.append(time.perf_counter() - t)
        c1 = time.process_time()
        for _ in range(block):
            t = time.perf_counter()
            await call_inst()
            inst.append(time.perf_counter() - t)
        flush()
        c2 = time.process_time()
        cpu_bare += c1 - c0
        cpu_inst += c2 - c1
    return _summary(bare, inst, cpu_bare, cpu_inst)


def _innermost(fn: Any) -> Any:
    while hasattr(fn, "__wrapped__") and hasattr(fn, "_self_wrapper"):
        fn = fn.__wrapped__
    return fn


def run_phase(
    name: str, transport: str, base_url: str, n: int, flush: Callable[[], Any]
) -> list[str]:
    sync, asy = _clients(transport, base_url)
    holder = [asy]
    bare_create = _innermost(vars(Completions)["create"])
    bare_acreate = _innermost(vars(AsyncCompletions)["create"])
    rows = []
    for stream in (False, True):
        kw: dict[str, Any] = {"model": "gpt-4o-mini", "messages": MSGS}
        if stream:
            kw["stream"] = True

        def bare(kw: dict[str, Any] = kw) -> Any:
            r = bare_create(sync.chat.completions, **kw)
            return list(r) if kw.get("stream") else r

        def inst(kw: dict[str, Any] = kw) -> Any:
            r = sync.chat.completions.create(**kw)
            return list(r) if kw.get("stream") else r

        for _ in range(20):
            bare(), inst()
        s = _measure_sync(bare, inst, n, flush)
        rows.append(_row(name, transport, "sync", stream, s))

        async def abare(kw: dict[str, Any] = kw) -> Any:
            r = await bare_acreate(holder[0].chat.completions, **kw)
            return [c async for c in r] if kw.get("stream") else r

        async def ainst(kw: dict[str, Any] = kw) -> Any:
            r = await holder[0].chat.completions.create(**kw)
            return [c async for c in r] if kw.get("stream") else r

        async def go() -> dict[str, float]:
            # A fresh async client per event loop: connections belong to their loop.
            holder[0] = _clients(transport, base_url)[1]
            for _ in range(20):
                await abare()
                await ainst()
            try:
                return await _measure_async(abare, ainst, n, flush)
            finally:
                await holder[0].close()

        rows.append(_row(name, transport, "async", stream, asyncio.run(go())))
    sync.close()
    return rows


def _row(name: str, transport: str, mode: str, stream: bool, s: dict[str, float]) -> str:
    kind = f"stream {CHUNKS}" if stream else "plain"
    pct = 100.0 * s["add_p50"] / s["bare_p50"]
    head = f"| {name} | {transport} | {mode} | {kind} | {s['bare_p50']:.0f} | "
    return head + f"{s['add_p50']:.1f} ({pct:.1f} %) | {s['add_p99']:.1f} | {s['add_cpu']:.1f} |"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=400)
    args = ap.parse_args()
    rows: list[str] = []
    with tempfile.TemporaryDirectory() as tmp, FakeProvider(chunks=CHUNKS) as fp:
        ls = logos_shift.init(filename=str(Path(tmp) / "calls.jsonl"))
        _instrument.patch_openai()
        for transport in ("mock", "socket"):
            n = args.n if transport == "mock" else max(100, args.n // 4)
            rows += run_phase("logos_shift", transport, fp.openai_base_url, n,
                              lambda: ls.flush(timeout=10))  # fmt: skip
        _instrument.unpatch_openai()
        try:
            from opentelemetry.instrumentation.openai import OpenAIInstrumentor
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
            from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
                InMemorySpanExporter,
            )
        except ImportError:
            OpenAIInstrumentor = None
        if OpenAIInstrumentor is not None:
            tp = TracerProvider()
            exporter = InMemorySpanExporter()
            tp.add_span_processor(BatchSpanProcessor(exporter))
            inst = OpenAIInstrumentor()
            inst.instrument(tracer_provider=tp)

            def otel_flush() -> None:
                tp.force_flush()
                exporter.clear()

            for transport in ("mock", "socket"):
                n = args.n if transport == "mock" else max(100, args.n // 4)
                rows += run_phase("otel-openai", transport, fp.openai_base_url, n, otel_flush)
            inst.uninstrument()
        ls.shutdown(timeout=10)
    print("| instrumentation | transport | mode | kind | bare p50 µs | added p50 µs | "
          "added p99 µs | added CPU µs/call |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(r)


if __name__ == "__main__":
    main()
