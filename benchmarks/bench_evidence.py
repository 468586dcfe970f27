"""Rollout evidence benchmark: reading a stage's evidence with 1,000 vs 1,000,000 calls in it.

The engine's evidence (per arm: calls, errors, feedback, cost, distinct units, a
latency sketch) is kept as aggregates updated at ingest, so reading it should
cost the same however many calls the stage holds.  For each size this builds a
canary on PostgreSQL (``LOGOS_SHIFT_TEST_POSTGRES_URL``, in a database of its
own, ``logos_bench_evidence``, dropped afterwards) or on SQLite (``--sqlite``, or
when that variable is not set),
bulk-inserts the calls server-side (``INSERT … SELECT`` over a generated
series), counts them into the aggregates through the store's own rebuild path
(what an upgraded database does), then times:

- the evidence read the engine makes on every evaluation (median of ``--reads``);
- for comparison, one scan of the stage's calls with the columns the evaluation
  read before the aggregates (``queries.scan``, the server's one calls scan).

Run: ``python benchmarks/bench_evidence.py [--calls 1000 1000000] [--sqlite]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa

from logos_shift.server import Database
from logos_shift.server.rollout.evidence import evidence
from logos_shift.server.rollout.types import Policy, RolloutState, Status
from logos_shift.server.store import queries, rollouts, routes
from logos_shift.server.store.keys import ensure_project
from logos_shift.server.store.migrations import migrate
from logos_shift.server.store.schema import calls

BENCH_DB = "logos_bench_evidence"
T0 = 1_800_000_000.0
ARMS = ("control", "ft-bench")

# One call per generated integer i: arms alternate 1:1, 2 % errors, 1 % fallbacks,
# feedback on most, a unit per call among 5,000 users, latencies spread 50 to 550 ms.
_SELECT = """
SELECT 'c' || {i} || '-' || {tag}, {pid}, {t0} + {i} * 0.001, 'bench',
       'bench', CASE WHEN {i} % 2 = 0 THEN 'control' ELSE 'ft-bench' END,
       {i} % 100 = 7, {i} % 50 = 3,
       'gpt-4o', 'gpt-4o', 100 + {i} % 50, 40 + {i} % 20, 50.0 + ({i} * 37) % 500,
       CASE WHEN {i} % 10 < 8 THEN 'success' WHEN {i} % 10 = 8 THEN 'failure' ELSE NULL END,
       CASE WHEN {i} % 10 < 9 THEN 1 ELSE 0 END, {t0},
       '{{"metadata":{{"user_id":"u' || ({i} % 5000) || '"}}}}'
"""
_COLUMNS = (
    "id, project_id, ts, dataset, route, variant, fallback, is_error, requested_model, "
    "served_model, input_tokens, output_tokens, latency_ms, outcome, feedback_count, "
    "received_at, record"
)


@contextmanager
def _database(sqlite: bool) -> Iterator[Database]:
    if sqlite:
        with tempfile.TemporaryDirectory() as tmp:
            db = Database(f"sqlite:///{Path(tmp) / 'bench.db'}")
            try:
                yield db
            finally:
                db.dispose()
        return
    url = str(os.environ.get("LOGOS_SHIFT_TEST_POSTGRES_URL"))
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)'))
        conn.execute(sa.text(f'CREATE DATABASE "{BENCH_DB}"'))
    db = Database(admin.url.set(database=BENCH_DB).render_as_string(hide_password=False))
    try:
        yield db
    finally:
        db.dispose()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)'))
        admin.dispose()


def _insert_calls(db: Database, pid: int, n: int, tag: int) -> None:
    if db.dialect == "postgresql":
        select = _SELECT.format(i="i", tag=tag, pid=pid, t0=T0)
        sql = f"INSERT INTO calls ({_COLUMNS}) {select} FROM generate_series(0, {n - 1}) AS i"
    else:
        select = _SELECT.format(i="i", tag=tag, pid=pid, t0=T0)
        sql = (
            f"WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s WHERE i < {n - 1}) "
            f"INSERT INTO calls ({_COLUMNS}) {select} FROM s"
        )
    with db.write() as conn:
        conn.execute(sa.text(sql))


def _canary(db: Database, pid: int) -> None:
    routes.put_route(
        db, pid, "bench",
        {"match": {"dataset": "bench"}, "control": {"name": "control", "model": "gpt-4o"},
         "variants": [{"name": "ft-bench", "model": "gpt-4o", "fallback": True}],
         "assignment": {"unit": "user_id", "seed": "bench"}},
    )  # fmt: skip
    state = RolloutState("bench", Status.CANARY, (0.5, 1.0), 0, "gpt-4o", "gpt-4o", since=T0)
    row = rollouts.RolloutRow(
        state, Policy(srm_grace_s=0), dataset="bench", variant_name="ft-bench", canary_since=T0
    )
    rollouts.save(db, pid, row)


def _scan_seconds(db: Database, pid: int) -> float:
    columns = [calls.c.variant, calls.c.ts, calls.c.is_error, calls.c.fallback,
               calls.c.latency_ms, calls.c.input_tokens, calls.c.output_tokens,
               calls.c.served_model, calls.c.outcome]  # fmt: skip
    f = queries.CallFilter(route="bench", since=T0, variants=ARMS)
    t0 = time.perf_counter()
    n = sum(1 for _ in queries.scan(db, pid, f, columns))
    elapsed = time.perf_counter() - t0
    assert n > 0
    return elapsed


def run(n: int, sqlite: bool, reads: int) -> tuple[int, float, float, float, float]:
    """Build a stage of ``n`` calls; return (calls, load s, count s, read ms, scan s)."""
    with _database(sqlite) as db:
        migrate(db)
        pid = ensure_project(db, "bench")
        t0 = time.perf_counter()
        _insert_calls(db, pid, n, n)
        load = time.perf_counter() - t0
        t0 = time.perf_counter()
        _canary(db, pid)  # calls already stored: counted into the aggregates here
        count = time.perf_counter() - t0
        if db.dialect == "postgresql":
            # The steady state autovacuum reaches after a bulk load: planner statistics.
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(sa.text("VACUUM ANALYZE"))
        for _ in range(3):  # warm-up: connections, caches
            evidence(db, pid, "bench", *ARMS, since=T0, stage_from=T0)
        times = []
        for _ in range(reads):
            t0 = time.perf_counter()
            ev = evidence(db, pid, "bench", *ARMS, since=T0, stage_from=T0)
            times.append((time.perf_counter() - t0) * 1000)
        assert ev.control.calls + ev.variant.calls == n, (ev.control.calls, ev.variant.calls)
        return n, load, count, statistics.median(times), _scan_seconds(db, pid)


def main() -> None:
    """Run the benchmark and print a markdown table."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, nargs="+", default=[1_000, 1_000_000])
    parser.add_argument("--reads", type=int, default=20)
    parser.add_argument("--sqlite", action="store_true", help="SQLite instead of PostgreSQL")
    args = parser.parse_args()
    if not args.sqlite and not os.environ.get("LOGOS_SHIFT_TEST_POSTGRES_URL"):
        print("LOGOS_SHIFT_TEST_POSTGRES_URL is not set: measuring on SQLite\n")
        args.sqlite = True
    name = "SQLite" if args.sqlite else "PostgreSQL"
    rows = [run(n, args.sqlite, args.reads) for n in args.calls]
    print(f"Rollout evidence read ({name}, {os.cpu_count()} CPUs, median of {args.reads})\n")
    print("| calls in the stage | bulk insert s | counted into aggregates s "
          "| evidence read ms | scan of the stage's calls s |")  # fmt: skip
    print("|---:|---:|---:|---:|---:|")
    for n, load, count, read_ms, scan in rows:
        print(f"| {n:,} | {load:.2f} | {count:.2f} | {read_ms:.2f} | {scan:.3f} |")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
