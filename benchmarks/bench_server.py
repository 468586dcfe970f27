"""Logos server benchmark: ingest throughput and config latency.

Runs the real server (``logos-shift server``, 1 and 2 uvicorn workers) against
SQLite, and PostgreSQL too when ``LOGOS_SHIFT_TEST_POSTGRES_URL`` is set.
Batches are built and gzip'd before the clock starts (the client's worker
does that off the request path), then sent by 4 threads in the client's
batch size (500 records).  Prints a markdown table.

With ``--canary`` the route the records use has a rollout in canary, so every
call (and the distinct user it carries) is also counted into the rollout's
evidence aggregates at ingest (the server's worst case).

Run: ``python benchmarks/bench_server.py [--records 20000] [--canary]``
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests
import sqlalchemy as sa

from logos_shift._capture.record import format_ts
from logos_shift.server import Database, create_key
from logos_shift.server.store.migrations import migrate

BATCH = 500
SENDERS = 4


def _record(size: int, i: int) -> dict[str, Any]:
    base = {
        "schema": 1, "type": "call", "id": str(uuid.uuid4()), "ts": format_ts(time.time()),
        "dataset": "bench", "source": "openai.chat.completions", "function": None,
        "input": {"model": "gpt-4o", "messages": [{"role": "user", "content": ""}]},
        "output": {"id": f"chatcmpl-{i}", "choices": [{"index": 0, "message": {
            "role": "assistant", "content": "ok"}}]},
        "error": None, "provider": "openai", "requested_model": "gpt-4o",
        "served_model": "gpt-4o", "route": "bench", "variant": "base" if i % 2 else "ft-1",
        "fallback": False, "response_id": f"chatcmpl-{uuid.uuid4().hex}",
        "usage": {"input_tokens": 100, "output_tokens": 50}, "latency_ms": 812.3,
        "ttft_ms": None, "stream": None, "metadata": {"user_id": f"u{i}"},
        "sdk": {"name": "openai", "version": "3.54.0"},
    }  # fmt: skip
    pad = size - len(json.dumps(base))
    base["input"]["messages"][0]["content"] = "lorem ipsum " * (max(pad, 0) // 12)
    return base


def _start_canary(db: Database) -> None:
    """Put route ``bench`` (arms ``base`` / ``ft-1``) in canary: ingest keeps its evidence."""
    from logos_shift.server.rollout.types import Policy, RolloutState, Status
    from logos_shift.server.store import rollouts, routes
    from logos_shift.server.store.keys import ensure_project

    pid = ensure_project(db, "bench")
    routes.put_route(
        db, pid, "bench",
        {"match": {"dataset": "bench"}, "control": {"name": "base", "model": "gpt-4o"},
         "variants": [{"name": "ft-1", "model": "gpt-4o", "fallback": True}],
         "assignment": {"unit": "user_id", "seed": "bench"}},
    )  # fmt: skip
    since = time.time() - 60
    state = RolloutState("bench", Status.CANARY, (0.5, 1.0), 0, "gpt-4o", "gpt-4o", since=since)
    rollouts.save(db, pid, rollouts.RolloutRow(
        state, Policy(), dataset="bench", variant_name="ft-1", canary_since=since))  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def _server(url: str, workers: int) -> Iterator[str]:
    port = _free_port()
    # The benchmark measures throughput, not the per-key rate limits (one key sends it all).
    config = Path(tempfile.mkdtemp()) / "server.json"
    config.write_text(json.dumps({"rate_limits": {"ingest_per_s": 0, "admin_per_s": 0}}))
    proc = subprocess.Popen(
        [sys.executable, "-m", "logos_shift", "server", "--port", str(port),
         "--database-url", url, "--log-level", "warning", "--workers", str(workers),
         "--config", str(config)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                requests.get(base + "/healthz", timeout=1).raise_for_status()
                break
            except requests.RequestException:
                time.sleep(0.05)
        yield base
    finally:
        proc.terminate()
        proc.wait(30)


def _ingest(base: str, key: str, size: int, total: int) -> float:
    batches = []
    for start in range(0, total, BATCH):
        recs = [_record(size, i) for i in range(start, min(start + BATCH, total))]
        batches.append(gzip.compress(json.dumps(recs).encode(), compresslevel=1))
    queue = list(batches)
    lock = threading.Lock()
    errors: list[str] = []

    def sender() -> None:
        with requests.Session() as s:
            s.headers.update({"Authorization": f"Bearer {key}", "Content-Encoding": "gzip",
                              "Content-Type": "application/json"})  # fmt: skip
            while True:
                with lock:
                    if not queue:
                        return
                    body = queue.pop()
                r = s.post(base + "/v1/ingest", data=body, timeout=120)
                if r.status_code != 200 or r.json()["accepted"] != BATCH:
                    errors.append(r.text[:200])

    threads = [threading.Thread(target=sender) for _ in range(SENDERS)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    if errors:
        raise SystemExit(f"ingest failed: {errors[0]}")
    return total / elapsed


def _config_latency(base: str, key: str, n: int) -> tuple[float, float, float]:
    with requests.Session() as s:
        s.headers["Authorization"] = f"Bearer {key}"
        etag = s.get(base + "/v1/config", timeout=10).headers["ETag"]
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            r = s.get(base + "/v1/config", headers={"If-None-Match": etag}, timeout=10)
            times.append((time.perf_counter() - t0) * 1000)
            assert r.status_code == 304
    times.sort()
    return statistics.median(times), times[int(0.95 * len(times))], n / (sum(times) / 1000)


def _reset_postgres(url: str) -> None:
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text("DROP SCHEMA public CASCADE"))
        conn.execute(sa.text("CREATE SCHEMA public"))
    engine.dispose()


def main() -> None:
    """Run the benchmark and print a markdown table."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=20_000, help="records per 2 KB run")
    parser.add_argument("--config-requests", type=int, default=2000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--canary", action="store_true", help="the route has a canary running")
    args = parser.parse_args()
    backends = [("SQLite", None)]
    pg = os.environ.get("LOGOS_SHIFT_TEST_POSTGRES_URL")
    if pg:
        backends.append(("PostgreSQL", pg))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, pg_url in backends:
            for workers in args.workers:
                url = pg_url or f"sqlite:///{Path(tmp) / f'bench{workers}.db'}"
                if pg_url:
                    _reset_postgres(pg_url)
                db = Database(url)
                migrate(db)
                key = create_key(db, "bench", "ingest")[0]
                if args.canary:
                    _start_canary(db)
                db.dispose()
                with _server(url, workers) as base:
                    _ingest(base, key, 2048, 2 * BATCH)  # warm-up
                    small = _ingest(base, key, 2048, args.records)
                    large = _ingest(base, key, 30 * 1024, max(args.records // 5, 2 * BATCH))
                    p50, p95, rps = _config_latency(base, key, args.config_requests)
                rows.append((name, workers, small, large, p50, p95, rps))
    print(f"Logos server (`logos-shift server --workers N`), {SENDERS} client threads, "
          f"gzip'd batches of {BATCH}, {os.cpu_count()} CPUs"
          f"{', the route in canary' if args.canary else ''}\n")  # fmt: skip
    print("| database | workers | ingest 2 KB rec/s | ingest 30 KB rec/s "
          "| config 304 p50 ms | config 304 p95 ms | config 304 req/s |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, workers, small, large, p50, p95, rps in rows:
        print(f"| {name} | {workers} | {small:,.0f} | {large:,.0f} | {p50:.2f} | {p95:.2f} "
              f"| {rps:,.0f} |")  # fmt: skip


if __name__ == "__main__":
    main()
