"""Dashboard benchmark: page render time on a database of many calls.

Seeds ``--calls`` chat calls (a tenth with feedback) into a fresh SQLite file
through the store's own ingest, serves the app on a real socket and times each
page as a browser fetches it (p50 / p95 of ``--requests`` fetches).  Prints a
markdown table.

Run: ``python benchmarks/bench_dashboard.py [--calls 100000] [--quick]``
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import requests

from logos_shift._capture.record import format_ts
from logos_shift.server import create_app, create_key, serve_in_thread
from logos_shift.server.store import ingest as _ingest
from logos_shift.server.store.keys import authenticate


def _records(n: int, start: float) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i in range(n):
        cid = str(uuid.uuid4())
        out.append({
            "schema": 1, "type": "call", "id": cid, "ts": format_ts(start + i * 0.01),
            "dataset": f"ds{i % 3}", "source": "openai.chat.completions", "provider": "openai",
            "requested_model": "gpt-4o", "served_model": "gpt-4o", "latency_ms": 100.0,
            "input": {"model": "gpt-4o", "messages": [{"role": "user", "content": f"q {i}"}]},
            "output": {"choices": [{"message": {"role": "assistant", "content": f"a {i}"}}]},
            "usage": {"input_tokens": 10, "output_tokens": 20},
        })  # fmt: skip
        if i % 10 == 0:
            out.append({"schema": 1, "type": "feedback", "id": str(uuid.uuid4()),
                        "ts": format_ts(start + i * 0.01), "target": cid,
                        "outcome": "failure" if i % 20 == 0 else "success"})  # fmt: skip
    return out


def main() -> None:
    """Seed, serve, time each page, print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--quick", action="store_true", help="2,000 calls, 5 fetches a page")
    parser.add_argument("--markdown", action="store_true", help="(the output is markdown)")
    args = parser.parse_args()
    if args.quick:
        args.calls, args.requests = 2000, 5
    with tempfile.TemporaryDirectory() as tmp:
        app = create_app(f"sqlite:///{Path(tmp) / 'bench.db'}")
        db = app.state.db
        admin = create_key(db, "bench", "admin")[0]
        principal = authenticate(db, admin)
        assert principal is not None
        recs = _records(args.calls, time.time() - args.calls)
        for i in range(0, len(recs), 5000):
            _ingest.ingest(db, principal.project_id, recs[i : i + 5000])
        some_id = recs[len(recs) // 2]["id"]
        pages = {
            "overview": "/ui/",
            "calls, newest 50 of a dataset": "/ui/calls",
            "calls, newest 50 of all": "/ui/calls?dataset=",
            "calls, one dataset, failures": "/ui/calls?dataset=ds1&outcome=failure",
            "calls, page 20 (cursor)": None,
            "calls, text search": "/ui/calls?q=q%20123",
            "one call": f"/ui/calls/{some_id}",
            "money": "/ui/money",
        }
        with serve_in_thread(app) as server, requests.Session() as s:
            r = s.post(server.url + "/ui/login", data={"key": admin}, timeout=30)
            r.raise_for_status()
            url = "/ui/calls"
            for _ in range(19):  # walk to page 20 once to get its cursor
                html = s.get(server.url + url, timeout=60).text
                marker = 'href="/ui/calls?'
                at = html.find(marker)
                url = html[at + 6 : html.index('"', at + 6)].replace("&amp;", "&")
            pages["calls, page 20 (cursor)"] = url
            print(f"| page ({args.calls:,} calls, SQLite) | p50 ms | p95 ms |")
            print("|---|---:|---:|")
            for name, path in pages.items():
                times = []
                for _ in range(args.requests):
                    t = time.perf_counter()
                    r = s.get(server.url + str(path), timeout=60)
                    times.append((time.perf_counter() - t) * 1000)
                    assert r.status_code == 200, (name, r.status_code)
                times.sort()
                p95 = times[min(len(times) - 1, int(len(times) * 0.95))]
                print(f"| {name} | {statistics.median(times):.1f} | {p95:.1f} |")
        db.dispose()


if __name__ == "__main__":
    main()
