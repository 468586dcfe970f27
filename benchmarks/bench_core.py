"""Core capture benchmark: decorator overhead and pipeline throughput.

Run: ``.venv/bin/python benchmarks/bench_core.py [--quick] [--records N]``

1. **Decorator overhead** on the caller's thread.  Blocks of calls alternate
   between the bare function, a ``wrapt`` passthrough (the floor any
   ``wrapt``-based decorator pays) and the ``@ls()``-decorated function, for a
   small payload (two short arguments, a small dict result; through a plain
   and through a coroutine function) and a 30 KB one (a chat-style list of 30
   messages).  Every call is timed on its own; "added" is
   decorated minus bare at the same percentile.  Between rounds the instance
   is flushed (outside the timed region), so the queue never fills and no
   record is dropped.  The background thread's CPU per record (serialising,
   encoding, writing the local JSONL copy) is measured in a separate phase
   from that thread's own CPU clock.

2. **Pipeline throughput**: ``N`` decorated calls (default 1,000,000) as fast
   as the caller can make them, to the local JSONL sink and to a local HTTP
   sink (a minimal ingest server in a *separate process*, so it never competes
   for this process's GIL and is not what is measured).  The caller backs off
   briefly whenever the queue holds more than ``max_queue_items // 2 - 2 *
   batch_size`` records (below the high-water mark past which batches spill to
   the spool), so the figure is the sustained end-to-end rate with nothing
   dropped or spooled.  RSS is sampled at the start, the middle and the end.

Targets (issue 2): <= 5 µs p50 added for the small payload; >= 20,000
records/s sustained on a 2-core machine; RSS flat over 1,000,000 records.
Prints markdown tables.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import wrapt
from _util import Table, interleaved, interleaved_async, rss_mib, summary, thread_cpu

import logos_shift
from logos_shift._transport.worker import WORKER

#: Row labels, in the order printed; the smoke test checks each appears.
OVERHEAD_ROWS = ("small payload", "small payload, async", "30 KB payload")
THROUGHPUT_ROWS = ("JSONL file", "HTTP (local server, separate process)")

SMALL_TEXT = "Is this review positive? 'Great product, arrived on time.'"
BIG_MESSAGES = [
    {"role": "user" if i % 2 else "assistant", "content": f"message {i:02d} " + "x" * 980}
    for i in range(30)
]


def classify(text: str, temperature: float = 0.0) -> dict[str, Any]:
    """The small-payload function: two short arguments, a small dict result."""
    return {"label": "positive", "score": 0.93}


async def aclassify(text: str, temperature: float = 0.0) -> dict[str, Any]:
    """:func:`classify` as a coroutine function."""
    return {"label": "positive", "score": 0.93}


def chat(messages: list[dict[str, str]], model: str) -> dict[str, Any]:
    """The 30 KB-payload function: a chat-style message list, a small dict result."""
    return {"role": "assistant", "content": "ok"}


# -- the ingest server for the HTTP sink (runs in a child process) -----------

_SERVER = r"""
import socket
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def setup(self):
        super().setup()
        # One write per response and no Nagle: else delayed ACKs add ~40 ms per batch.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    def log_message(self, *a):
        pass
    def _send(self, status, body):
        head = (f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode()
        self.wfile.write(head + body)
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._send(200, b"{}")
    def do_GET(self):
        self._send(304, b"")

srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
srv.daemon_threads = True
print(srv.server_address[1], flush=True)
srv.serve_forever()
"""


class IngestServer:
    """A minimal ingest endpoint in a child process: reads each POST, answers 200."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _SERVER], stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None
        self.url = f"http://127.0.0.1:{int(self.proc.stdout.readline())}"

    def __enter__(self) -> IngestServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


# -- 1. decorator overhead ---------------------------------------------------


def worker_cpu() -> float:
    """CPU seconds used so far by the logos_shift background thread (0 before it starts)."""
    thread = WORKER.thread
    return thread_cpu(thread) if thread is not None else 0.0


def background_cpu_per_record(
    ls: Any, make: Callable[[int], object], n: int, chunk: int, cpu: Any = worker_cpu
) -> float:
    """Background-thread CPU µs per record for ``n`` records.

    ``make(k)`` makes ``k`` records; ``ls`` is flushed after each ``chunk`` of
    them so the queue never fills (nothing is dropped).  Only the background
    thread's own CPU clock is read, so the caller's work is not counted.
    """
    ls.flush(timeout=60)
    c0 = cpu()
    done = 0
    while done < n:
        k = min(chunk, n - done)
        make(k)
        ls.flush(timeout=60)
        done += k
    return (cpu() - c0) / n * 1e6


def measure_overhead(
    pkg: ModuleType, path: str, rounds: int, block: int, cpu: Any = worker_cpu
) -> dict[str, dict[str, float]]:
    """Decorator overhead for both payloads with the package ``pkg`` (``logos_shift``).

    Args:
        pkg: the package to measure (a module exposing ``LogosShift``).
        path: the JSONL file to write.
        rounds: interleaved rounds.
        block: calls per case per round.
        cpu: returns the background thread's CPU seconds.

    Returns:
        row label -> ``bare_p50``, ``wrapt_p50``, ``dec_p50``, ``added_p50``,
        ``added_p99``, ``bg_cpu`` (µs), ``dropped``.
    """
    ls = pkg.LogosShift(filename=path)
    try:
        small = ls(dataset="bench")(classify)
        big = ls(dataset="bench")(chat)
        passthrough_small = wrapt.FunctionWrapper(classify, lambda w, i, a, k: w(*a, **k))
        passthrough_big = wrapt.FunctionWrapper(chat, lambda w, i, a, k: w(*a, **k))
        msgs = BIG_MESSAGES
        small_cases = {
            "small bare": lambda: classify(SMALL_TEXT, temperature=0.2),
            "small wrapt": lambda: passthrough_small(SMALL_TEXT, temperature=0.2),
            "small dec": lambda: small(SMALL_TEXT, temperature=0.2),
        }
        big_cases = {
            "big bare": lambda: chat(msgs, "gpt-4o"),
            "big wrapt": lambda: passthrough_big(msgs, "gpt-4o"),
            "big dec": lambda: big(msgs, "gpt-4o"),
        }
        # Each payload on its own, flushed between rounds, and blocks of 30 KB
        # records small enough (~3 MiB) not to fill a batch: the background
        # thread then never runs during a timed block, so the figures are the
        # caller's own cost (the background cost is the last column).
        times: dict[str, list[float]] = {}
        for cases, n in ((small_cases, block), (big_cases, max(1, block // 2))):
            interleaved(cases, 3, n, lambda: ls.flush(timeout=60))  # warm-up
            gc.collect()
            times.update(interleaved(cases, rounds, n, lambda: ls.flush(timeout=60)))
        n_bg = max(2000, rounds * block // 4)

        def make_small(k: int) -> None:
            for _ in range(k):
                small(SMALL_TEXT, temperature=0.2)

        def make_big(k: int) -> None:
            for _ in range(k):
                big(msgs, "gpt-4o")

        adec = ls(dataset="bench")(aclassify)
        bg_small = background_cpu_per_record(ls, make_small, n_bg, 1000, cpu)
        bg_big = background_cpu_per_record(ls, make_big, n_bg // 4, 100, cpu)
        times.update(asyncio.run(_async_overhead(ls, rounds, block)))
        bg_async = background_cpu_per_record(
            ls, lambda k: asyncio.run(_await_n(adec, k)), n_bg, 1000, cpu
        )
        dropped = ls.stats()["dropped"]
    finally:
        ls.shutdown(timeout=30)
    out: dict[str, dict[str, float]] = {}
    for label, key, bg in (
        ("small payload", "small", bg_small),
        ("small payload, async", "async", bg_async),
        ("30 KB payload", "big", bg_big),
    ):
        bare = summary(times[f"{key} bare"])
        wr = summary(times[f"{key} wrapt"])
        dec = summary(times[f"{key} dec"])
        out[label] = {
            "bare_p50": bare["p50"],
            "wrapt_p50": wr["p50"],
            "dec_p50": dec["p50"],
            "added_p50": dec["p50"] - bare["p50"],
            "added_p99": dec["p99"] - bare["p99"],
            "bg_cpu": bg,
            "dropped": dropped,
        }
    return out


async def _async_overhead(ls: Any, rounds: int, block: int) -> dict[str, list[float]]:
    """The small payload through a coroutine function: bare, wrapt passthrough, ``@ls``."""
    dec = ls(dataset="bench")(aclassify)
    passthrough = wrapt.FunctionWrapper(aclassify, lambda w, i, a, k: w(*a, **k))
    cases = {
        "async bare": lambda: aclassify(SMALL_TEXT, temperature=0.2),
        "async wrapt": lambda: passthrough(SMALL_TEXT, temperature=0.2),
        "async dec": lambda: dec(SMALL_TEXT, temperature=0.2),
    }
    await interleaved_async(cases, 3, block, lambda: ls.flush(timeout=60))  # warm-up
    gc.collect()
    return await interleaved_async(cases, rounds, block, lambda: ls.flush(timeout=60))


async def _await_n(fn: Any, n: int) -> None:
    for _ in range(n):
        await fn(SMALL_TEXT, temperature=0.2)


# -- 2. pipeline throughput --------------------------------------------------


def measure_throughput(ls: Any, records: int) -> dict[str, float]:
    """Push ``records`` decorated calls through ``ls`` and time them to the end of the flush.

    Returns:
        ``seconds``, ``rate`` (records/s), ``sent``, ``dropped``, ``rss0`` /
        ``rss_mid`` / ``rss_end`` (MiB), ``cpu`` (process CPU µs per record:
        caller and background thread together).
    """

    @ls(dataset="bench")
    def work(text: str, i: int) -> dict[str, Any]:
        return {"label": "positive", "i": i}

    s = ls.settings
    # Below the pipeline's high-water mark (half the queue), past which new
    # batches spill to the spool instead of waiting for the upload in flight.
    high = max(s.batch_size, s.max_queue_items // 2 - 2 * s.batch_size)
    check = max(1, s.batch_size // 2)
    for i in range(2 * s.batch_size):  # warm-up: start the worker, open the sink
        work(SMALL_TEXT, i)
    ls.flush(timeout=60)
    base = ls.stats()
    gc.collect()
    rss0 = rss_mib()
    rss_mid = rss0
    mid = records // 2
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    for i in range(records):
        work(SMALL_TEXT, i)
        if i % check == 0:
            if i == mid - mid % check:
                rss_mid = rss_mib()
            while ls.stats()["pending"] > high:
                time.sleep(0.0005)
    ok = ls.flush(timeout=300)
    seconds = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    st = ls.stats()
    return {
        "seconds": seconds,
        "rate": records / seconds,
        "sent": st["sent"] - base["sent"],
        "dropped": st["dropped"] - base["dropped"],
        "flushed": float(ok),
        "rss0": rss0,
        "rss_mid": rss_mid,
        "rss_end": rss_mib(),
        "cpu": cpu / records * 1e6,
    }


def run_throughput(tmp: Path, records: int) -> list[tuple[str, dict[str, float]]]:
    """Throughput to the JSONL file and to the local HTTP server."""
    out = []
    ls = logos_shift.LogosShift(filename=str(tmp / "throughput.jsonl"))
    try:
        out.append((THROUGHPUT_ROWS[0], measure_throughput(ls, records)))
    finally:
        ls.shutdown(timeout=60)
    with IngestServer() as srv:
        ls = logos_shift.LogosShift(
            api_key="bench-key",
            server_url=srv.url,
            spool_dir=str(tmp / "spool"),
            state_dir=str(tmp / "state"),
        )
        try:
            out.append((THROUGHPUT_ROWS[1], measure_throughput(ls, records)))
        finally:
            ls.shutdown(timeout=60)
    return out


def main() -> None:
    """Run both parts and print their tables."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="a fast, less precise run")
    ap.add_argument("--records", type=int, default=None, help="throughput records per sink")
    ap.add_argument("--rounds", type=int, default=None, help="decorator-overhead rounds")
    args = ap.parse_args()
    rounds = args.rounds or (20 if args.quick else 200)
    block = 200
    records = args.records or (20_000 if args.quick else 1_000_000)

    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
          f"logos_shift {getattr(logos_shift, '__version__', '?')}, wrapt {wrapt.__version__}"
          f"{', quick run' if args.quick else ''}\n")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        res = measure_overhead(logos_shift, str(tmp / "overhead.jsonl"), rounds, block)
        t = Table(
            f"Decorator overhead on the caller's thread ({rounds * block:,} calls per case, "
            f"{rounds * max(1, block // 2):,} for 30 KB; interleaved; JSONL sink)",
            ["payload", "bare p50 µs:", "wrapt passthrough p50 µs:", "@ls p50 µs:",
             "added p50 µs:", "added p99 µs:", "background CPU µs/record:"],
        )  # fmt: skip
        for label in OVERHEAD_ROWS:
            r = res[label]
            t.add(label, r["bare_p50"], r["wrapt_p50"], r["dec_p50"], r["added_p50"],
                  r["added_p99"], r["bg_cpu"])  # fmt: skip
        t.print()
        dropped = int(res[OVERHEAD_ROWS[0]]["dropped"])
        print(f"Records dropped during the overhead run: {dropped}. Target: <= 5 µs p50 added "
              "(small payload).\n")  # fmt: skip

        rows = run_throughput(tmp, records)
        t = Table(
            f"Pipeline throughput, {records:,} records per sink (small payload, "
            "caller and background thread in one process)",
            ["sink", "records/s:", "seconds:", "sent:", "dropped:", "RSS start MiB:",
             "RSS middle MiB:", "RSS end MiB:", "process CPU µs/record:"],
        )  # fmt: skip
        for label, r in rows:
            t.add(label, r["rate"], r["seconds"], int(r["sent"]), int(r["dropped"]),
                  r["rss0"], r["rss_mid"], r["rss_end"], r["cpu"])  # fmt: skip
        t.print()
        print("Target: >= 20,000 records/s sustained, RSS flat over 1,000,000 records.")


if __name__ == "__main__":
    main()
