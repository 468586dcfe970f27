"""Added cost of ``patch_openai()`` per call against the bare SDK and two peers, in one run.

Run: ``.venv/bin/python benchmarks/bench_providers.py [--quick] [--n 600]``
(the peers come with ``pip install -e '.[bench]'``; a missing one is skipped and said so).

Variants, all calling the same ``client.chat.completions`` object:

- ``bare``: the SDK's own ``create``, unwrapped;
- ``logos_shift``: ``patch_openai()``, records to a local JSONL file, no routing;
- ``logos_shift+routing``: the same with ``logos_shift.init(routes=<file>)``: a route that
  matches the call and sends every user to a variant model (the request is rewritten);
- ``otel-openai``: OpenTelemetry's openai instrumentation
  (``opentelemetry-instrumentation-openai``), SDK ``TracerProvider`` + ``BatchSpanProcessor``
  into an in-memory exporter;
- ``langfuse``: Langfuse's OpenAI wrapper (``langfuse.openai``) with its own tracer provider
  and batch processor exporting into an in-memory exporter (``span_exporter=``), so no
  Langfuse server is contacted (the client is configured with a dead local port anyway).

Each wrapper is taken from the class after its library patched it and the class is then
restored, so the variants do not stack and can be called side by side.  Langfuse's global
``Stream.__iter__`` hook is installed only during its own blocks.

Scenarios: transport (in-process ``httpx2.MockTransport`` via ``http_client=``, or
``httpx.MockTransport`` with an openai 1.x/2.x that still uses httpx; the local
``FakeProvider`` over a socket) x mode (sync, async) x kind (non-stream; stream of 50 chunks,
consumed to the end).  Within a scenario the variants alternate, so all see the same
machine state:

- Latency phase: one call per variant in turn (the order rotated every round); p50 and p99
  of the per-call wall time (the stream fully consumed), variant minus bare.  Every
  ``LAT_FLUSH`` rounds each variant is flushed, outside the timed calls.
- CPU phase: blocks of ``CPU_BLOCK`` calls per variant in turn; ``time.process_time()``
  (every thread of the process) over each block *including* the variant's flush at its end
  (our background serialisation and JSONL write, the peers' span processing and export),
  divided by the calls, variant minus bare.

Prints a markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai
from _util import percentile
from openai.resources.chat.completions.completions import AsyncCompletions, Completions

import logos_shift
from logos_shift import providers
from logos_shift.testing import FakeProvider

MSGS = [{"role": "user", "content": "benchmark prompt with a few words in it"}]
MODEL = "gpt-4o-mini"
CHUNKS = 50
WARMUP = 10
QUICK = 10
#: Calls per variant between flushes in the latency phase (the records wait, as in an app).
LAT_FLUSH = 50
#: Calls per block in the CPU phase; each block ends with the variant's flush.
CPU_BLOCK = 50
VARIANTS = ("bare", "logos_shift", "logos_shift+routing", "otel-openai", "langfuse")
_ORIGINAL = {cls: vars(cls)["create"] for cls in (Completions, AsyncCompletions)}
# openai 3.x is built on httpx2, older releases on httpx: use the one the SDK's client is.
_HTTPX: Any = importlib.import_module(
    next(
        c.__module__
        for c in openai.DefaultHttpxClient.__mro__
        if c.__module__ in ("httpx", "httpx2")
    )
)


# -- the in-process transport ----------------------------------------------------


def _completion() -> bytes:
    return json.dumps({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": MODEL,
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": "hello " * 20}}],
        "usage": {"prompt_tokens": 8, "completion_tokens": 20, "total_tokens": 28},
    }).encode()  # fmt: skip


def _sse() -> bytes:
    out = []
    for i in range(CHUNKS):
        chunk = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1,
                 "model": MODEL, "choices": [{"index": 0, "delta": {"content": f"w{i} "},
                 "finish_reason": "stop" if i == CHUNKS - 1 else None}]}  # fmt: skip
        out.append(b"data: " + json.dumps(chunk).encode() + b"\n\n")
    out.append(b"data: [DONE]\n\n")
    return b"".join(out)


JSON_BODY, SSE_BODY = _completion(), _sse()


def _handler(request: Any) -> Any:
    if b'"stream":true' in request.content or b'"stream": true' in request.content:
        return _HTTPX.Response(200, content=SSE_BODY, headers={"content-type": "text/event-stream"})
    return _HTTPX.Response(200, content=JSON_BODY, headers={"content-type": "application/json"})


def _client(transport: str, base_url: str, is_async: bool) -> Any:
    if transport == "mock":
        if is_async:
            return openai.AsyncOpenAI(api_key="k", base_url="http://bench/v1",
                                      http_client=openai.DefaultAsyncHttpxClient(
                                          transport=_HTTPX.MockTransport(_handler)))  # fmt: skip
        return openai.OpenAI(api_key="k", base_url="http://bench/v1",
                             http_client=openai.DefaultHttpxClient(
                                 transport=_HTTPX.MockTransport(_handler)))  # fmt: skip
    cls: Any = openai.AsyncOpenAI if is_async else openai.OpenAI
    return cls(api_key="k", base_url=base_url, max_retries=0)


# -- the variants --------------------------------------------------------------------


class Variant:
    """One way of calling ``create``: its wrappers, how to enter it and how to flush it."""

    def __init__(self, name: str, sync_fn: Any, async_fn: Any,
                 enter: Callable[[], contextlib.AbstractContextManager[Any]],
                 flush: Callable[[], Any]) -> None:  # fmt: skip
        self.name = name
        self.sync_fn = sync_fn
        self.async_fn = async_fn
        self.enter = enter
        self.flush = flush
        self.lat: list[float] = []
        self.cpu = 0.0
        self.cpu_calls = 0


def _grab(install: Callable[[], Any]) -> tuple[Any, Any]:
    """Run ``install``, take the wrappers it put on ``create``, restore the originals."""
    for cls, fn in _ORIGINAL.items():
        cls.create = fn  # type: ignore[method-assign]
    install()
    got = (vars(Completions)["create"], vars(AsyncCompletions)["create"])
    for cls, fn in _ORIGINAL.items():
        cls.create = fn  # type: ignore[method-assign]
    if got[0] is _ORIGINAL[Completions]:
        raise RuntimeError("the instrumentation did not wrap Completions.create")
    return got


_CLOSE: list[Any] = []


def _close() -> None:
    for inst in _CLOSE:
        inst.shutdown(timeout=10)


def _variants(tmp: Path, skipped: list[str]) -> list[Variant]:
    nothing = contextlib.nullcontext
    out = [Variant("bare", _ORIGINAL[Completions], _ORIGINAL[AsyncCompletions], nothing,
                   lambda: None)]  # fmt: skip

    ls = logos_shift.init(filename=str(tmp / "calls.jsonl"))
    routes = tmp / "routes.json"
    routes.write_text(json.dumps({"version": 1, "routes": {"bench": {
        "match": {"model": MODEL},
        "control": {"name": "base", "model": MODEL},
        "variants": [{"name": "ft-1", "model": "ft:gpt-4o-mini:bench::x1", "fallback": True}],
        "rollout": {"variant_pct": 1.0},
    }}}))  # fmt: skip
    routed = logos_shift.LogosShift(filename=str(tmp / "routed.jsonl"), routes=str(routes))
    _CLOSE.extend((ls, routed))
    fns = _grab(providers.patch_openai)
    providers.unpatch_openai()
    out.append(Variant("logos_shift", *fns, nothing, lambda: ls.flush(timeout=10)))
    out.append(Variant("logos_shift+routing", *fns, routed.activate,
                       lambda: routed.flush(timeout=10)))  # fmt: skip

    try:
        from opentelemetry.instrumentation.openai import OpenAIInstrumentor
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    except ImportError:
        skipped.append("otel-openai (pip install -e '.[bench]')")
    else:
        tp = TracerProvider()
        exporter = InMemorySpanExporter()
        tp.add_span_processor(BatchSpanProcessor(exporter))
        fns = _grab(lambda: OpenAIInstrumentor().instrument(tracer_provider=tp))

        def otel_flush() -> None:
            tp.force_flush()
            exporter.clear()

        out.append(Variant("otel-openai", *fns, nothing, otel_flush))

    try:
        from langfuse import Langfuse
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    except ImportError:
        skipped.append("langfuse (pip install -e '.[bench]')")
    else:
        lf_exporter = InMemorySpanExporter()
        lf = Langfuse(public_key="pk-lf-bench", secret_key="sk-lf-bench",
                      base_url="http://127.0.0.1:9", span_exporter=lf_exporter,
                      tracer_provider=TracerProvider(), timeout=1)  # fmt: skip
        before = (openai.Stream.__iter__, openai.AsyncStream.__aiter__)
        fns = _grab(lambda: __import__("langfuse.openai"))
        hooks = (openai.Stream.__iter__, openai.AsyncStream.__aiter__)
        openai.Stream.__iter__, openai.AsyncStream.__aiter__ = before  # type: ignore[method-assign]

        @contextlib.contextmanager
        def lf_hooks() -> Iterator[None]:
            # Langfuse finalises streams through a global Stream.__iter__ hook: on only
            # during its own blocks, so the other variants do not pay for it.
            openai.Stream.__iter__, openai.AsyncStream.__aiter__ = hooks  # type: ignore[method-assign]
            try:
                yield
            finally:
                openai.Stream.__iter__, openai.AsyncStream.__aiter__ = before  # type: ignore[method-assign]

        def lf_flush() -> None:
            lf.flush()
            lf_exporter.clear()

        out.append(Variant("langfuse", *fns, lf_hooks, lf_flush))
    return out


# -- measurement ---------------------------------------------------------------------


def _kwargs(stream: bool) -> dict[str, Any]:
    kw: dict[str, Any] = {"model": MODEL, "messages": MSGS}
    if stream:
        kw["stream"] = True
    return kw


def _plan(n: int) -> tuple[int, int, int]:
    """(latency rounds, CPU blocks, calls per CPU block) for ``n`` calls per variant."""
    per_block = min(CPU_BLOCK, n)
    return n, max(1, n // per_block), per_block


def _run_sync(variants: list[Variant], client: Any, stream: bool, n: int) -> None:
    res = client.chat.completions
    kw = _kwargs(stream)
    bound = [(v, v.sync_fn.__get__(res, Completions)) for v in variants]
    rounds, blocks, per_block = _plan(n)

    def call(fn: Any) -> None:
        r = fn(**kw)
        if stream:
            for _ in r:
                pass

    def cpu_block(v: Variant, fn: Any, calls: int, keep: bool) -> None:
        with v.enter():
            c0 = time.process_time()
            for _ in range(calls):
                call(fn)
            v.flush()
            if keep:
                v.cpu += time.process_time() - c0
                v.cpu_calls += calls

    for v, fn in bound:  # warm-up
        cpu_block(v, fn, WARMUP, False)
    # Latency: one call per variant in turn (order rotated every round).
    for i in range(rounds):
        k = i % len(bound)
        for v, fn in bound[k:] + bound[:k]:
            with v.enter():
                t = time.perf_counter()
                call(fn)
                v.lat.append(time.perf_counter() - t)
        if i % LAT_FLUSH == LAT_FLUSH - 1:
            for v, _ in bound:
                v.flush()
    # CPU: blocks of calls, each ending with the variant's flush.
    for i in range(blocks):
        k = i % len(bound)
        for v, fn in bound[k:] + bound[:k]:
            cpu_block(v, fn, per_block, True)


async def _run_async(variants: list[Variant], client: Any, stream: bool, n: int) -> None:
    res = client.chat.completions
    kw = _kwargs(stream)
    bound = [(v, v.async_fn.__get__(res, AsyncCompletions)) for v in variants]
    rounds, blocks, per_block = _plan(n)

    async def call(fn: Any) -> None:
        r = await fn(**kw)
        if stream:
            async for _ in r:
                pass

    async def cpu_block(v: Variant, fn: Any, calls: int, keep: bool) -> None:
        with v.enter():
            c0 = time.process_time()
            for _ in range(calls):
                await call(fn)
            v.flush()
            if keep:
                v.cpu += time.process_time() - c0
                v.cpu_calls += calls

    for v, fn in bound:
        await cpu_block(v, fn, WARMUP, False)
    for i in range(rounds):
        k = i % len(bound)
        for v, fn in bound[k:] + bound[:k]:
            with v.enter():
                t = time.perf_counter()
                await call(fn)
                v.lat.append(time.perf_counter() - t)
        if i % LAT_FLUSH == LAT_FLUSH - 1:
            for v, _ in bound:
                v.flush()
    for i in range(blocks):
        k = i % len(bound)
        for v, fn in bound[k:] + bound[:k]:
            await cpu_block(v, fn, per_block, True)


def _rows(scenario: str, variants: list[Variant]) -> list[str]:
    bare = variants[0]
    b50, b99 = statistics.median(bare.lat) * 1e6, percentile(bare.lat, 99) * 1e6
    bcpu = bare.cpu / bare.cpu_calls * 1e6
    rows = [f"| {scenario} | bare | {b50:.0f} | - | {b99:.0f} | - | {bcpu:.0f} | - |"]
    for v in variants[1:]:
        p50, p99 = statistics.median(v.lat) * 1e6, percentile(v.lat, 99) * 1e6
        cpu = v.cpu / v.cpu_calls * 1e6
        rows.append(f"| {scenario} | {v.name} | {p50:.0f} | {p50 - b50:+.1f} "
                    f"({100.0 * (p50 - b50) / b50:+.1f} %) | {p99:.0f} | {p99 - b99:+.0f} | "
                    f"{cpu:.0f} | {cpu - bcpu:+.1f} |")  # fmt: skip
    return rows


def _reset(variants: list[Variant]) -> None:
    for v in variants:
        v.lat = []
        v.cpu = 0.0
        v.cpu_calls = 0


def main(argv: list[str] | None = None) -> None:
    """Run every scenario and print the markdown table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=600, help="calls per variant and scenario (mock)")
    ap.add_argument("--quick", action="store_true", help="a few calls each (smoke run)")
    args = ap.parse_args(argv)
    n = QUICK if args.quick else args.n
    n_socket = n if args.quick else max(QUICK, n // 2)
    skipped: list[str] = []
    rows: list[str] = []
    with tempfile.TemporaryDirectory() as tmp, FakeProvider(chunks=CHUNKS) as fp:
        variants = _variants(Path(tmp), skipped)
        base = fp.openai_base_url
        for transport in ("mock", "socket"):
            calls = n if transport == "mock" else n_socket
            for mode in ("sync", "async"):
                for stream in (False, True):
                    kind = f"stream {CHUNKS}" if stream else "non-stream"
                    _reset(variants)
                    gc.collect()
                    if mode == "sync":
                        client = _client(transport, base, False)
                        _run_sync(variants, client, stream, calls)
                        client.close()
                    else:

                        async def go(
                            stream: bool = stream, transport: str = transport, calls: int = calls
                        ) -> None:
                            client = _client(transport, base, True)
                            try:
                                await _run_async(variants, client, stream, calls)
                            finally:
                                await client.close()

                        asyncio.run(go())
                    rows += _rows(f"{transport} {mode} {kind}", variants)
                    print(f"done: {transport} {mode} {kind}", file=sys.stderr)
        for v in variants:
            v.flush()
        _close()
    print(f"Added cost per call vs the bare SDK (openai {openai.__version__}, "
          f"per variant: {n} calls in-process and {n_socket} over the socket for latency, "
          f"one call per variant in turn; as many again for CPU, in blocks of "
          f"{min(CPU_BLOCK, n)} each ending with the variant's flush).\n")  # fmt: skip
    print("| scenario | variant | p50 µs | added p50 µs | p99 µs | added p99 µs | "
          "CPU µs/call | added CPU µs/call |")  # fmt: skip
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    print("\n".join(rows))
    for s in skipped:
        print(f"\nskipped: {s}")


if __name__ == "__main__":
    main()
