"""A rollout's evidence counted at ingest, so reading it costs the same at any stage size.

Per route rollout (``generation``), per window and per arm: calls, failed calls
(errors and fallbacks), feedback verdicts and successes of the successful calls,
token moments per model (cost follows the price table at read time), a latency
sketch (log-scale buckets), and the distinct assignment units plus unit-less
calls of the latest window (the sample-ratio check).

Windows start at every time the engine reads from: the canary's start and each
state's sample-ratio window (``since + srm_grace_s``); a call counts in the latest
window starting at or before its ``ts``, so "calls since T" for any such T is a
sum over a handful of rows.  Only the route's two arms (the route's control and
the rollout's variant) are counted, as the engine reads no other.

Everything is updated in the transaction that stores the call or its feedback
(:func:`add_calls`, :func:`change_outcomes`).  A new window (:func:`open_windows`,
called when a rollout is saved) normally starts after every stored call; when
calls from its future are already stored (a client clock ahead, or a call made
while the transition committed) the windows from there on are rebuilt from the
calls, as they are for a rollout whose aggregates were never kept (a database
upgraded mid-canary).  On PostgreSQL ingest share-locks the project's rollout
rows before it stores anything (:func:`lock_rollouts`) and a transition updates
its row first, so a call is never counted in a window that closed before it was
committed, and the two take their locks in the same order (no deadlock).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from logos_shift.server.stats.sketch import LatencySketch, bucket_of

from . import queries
from .db import Database
from .schema import (
    calls,
    rollout_arm_stats,
    rollout_cost_stats,
    rollout_latency,
    rollout_units,
    rollout_windows,
    rollouts,
    routes,
)

__all__ = [
    "ArmTotals",
    "CallFacts",
    "Counting",
    "Totals",
    "add_calls",
    "change_outcomes",
    "counting",
    "lock_rollouts",
    "open_windows",
    "read",
]

_VERDICTS = ("success", "failure")
_COUNTS = ("calls", "errors", "feedback", "successes", "units", "unitless")
_CALLS, _ERRORS, _FEEDBACK, _SUCCESSES, _UNITS, _UNITLESS = range(len(_COUNTS))
_MOMENTS = ("tok_in", "tok_out", "tok_in2", "tok_inout", "tok_out2")


@dataclass(frozen=True)
class CallFacts:
    """What the aggregates need of one call.

    Attributes:
        route: the route that served it.
        arm: the variant name that served it.
        ts: its time.
        failed: it failed or fell back to control.
        model: served (else requested) model.
        input_tokens: input tokens, when known.
        output_tokens: output tokens, when known.
        latency_ms: its latency, when known.
        outcome: its latest feedback outcome.
        metadata: its ``metadata`` object (the unit is read from it).
    """

    route: str
    arm: str
    ts: float
    failed: bool
    model: str | None
    input_tokens: int | None
    output_tokens: int | None
    latency_ms: float | None
    outcome: str | None
    metadata: Any = None


@dataclass
class _Rollout:
    generation: int
    arms: tuple[str, str]
    unit_key: str
    windows: list[float]  # ascending

    def window_of(self, ts: float) -> float | None:
        found = None
        for start in self.windows:
            if start > ts:
                break
            found = start
        return found


#: The routes whose rollout counts evidence (see :func:`counting`).
Counting = dict[str, _Rollout]


@dataclass
class _Delta:
    counts: dict[tuple[float, str], list[int]] = field(default_factory=dict)
    lat_range: dict[tuple[float, str], tuple[float, float]] = field(default_factory=dict)
    latency: dict[tuple[float, str, int], int] = field(default_factory=dict)
    cost: dict[tuple[float, str, str], list[float]] = field(default_factory=dict)
    units: dict[tuple[float, str], set[str]] = field(default_factory=dict)

    def count(self, key: tuple[float, str], column: str, by: int = 1) -> None:
        row = self.counts.setdefault(key, [0] * len(_COUNTS))
        row[_COUNTS.index(column)] += by

    def add_call(self, ro: _Rollout, window: float, c: CallFacts) -> None:
        key = (window, c.arm)
        row = self.counts.get(key)
        if row is None:
            row = self.counts[key] = [0] * len(_COUNTS)
        row[_CALLS] += 1
        if c.failed:
            row[_ERRORS] += 1
        else:
            if c.outcome in _VERDICTS:
                row[_FEEDBACK] += 1
                row[_SUCCESSES] += c.outcome == "success"
            if c.latency_ms is not None:
                ms = float(c.latency_ms)
                b = (window, c.arm, bucket_of(ms))
                self.latency[b] = self.latency.get(b, 0) + 1
                lo, hi = self.lat_range.get(key, (ms, ms))
                self.lat_range[key] = (min(lo, ms), max(hi, ms))
            if c.input_tokens is not None or c.output_tokens is not None:
                tin, tout = float(c.input_tokens or 0), float(c.output_tokens or 0)
                m = self.cost.get((window, c.arm, c.model or ""))
                if m is None:
                    m = self.cost[(window, c.arm, c.model or "")] = [0.0] * 6
                m[0] += 1.0
                m[1] += tin
                m[2] += tout
                m[3] += tin * tin
                m[4] += tin * tout
                m[5] += tout * tout
        if window == ro.windows[-1]:
            unit = _unit(c.metadata, ro.unit_key)
            if unit is None:
                row[_UNITLESS] += 1
            else:
                self.units.setdefault(key, set()).add(unit)


def _unit(metadata: Any, key: str) -> str | None:
    """The call's assignment unit as text, None when it has none."""
    if not isinstance(metadata, dict):
        return None
    value = metadata.get(key)
    if value is None or value == "":
        return None
    # JSON text: distinct values stay distinct, and a NUL (PostgreSQL text refuses it)
    # is escaped.
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def _key(project_id: int, route: str, generation: int) -> dict[str, Any]:
    return {"project_id": project_id, "route": route, "generation": generation}


_PID: sa.BindParameter[int] = sa.bindparam("pid")
_NAMES: sa.BindParameter[list[str]] = sa.bindparam("names", expanding=True)
# Built once: ingest runs these on every batch of routed calls.
_ROLLOUTS_Q = sa.select(rollouts.c.route, rollouts.c.generation, rollouts.c.variant_name).where(
    rollouts.c.project_id == _PID,
    rollouts.c.route.in_(_NAMES),
    rollouts.c.canary_since.is_not(None),
    rollouts.c.variant_name.is_not(None),
)
# A transition updates the rollout row before it opens a window: ingest on PostgreSQL
# waits for it, and it waits for the ingests counting into the window it closes.
_ROLLOUTS_SHARED_Q = _ROLLOUTS_Q.with_for_update(read=True)
_LOCK_Q = (
    sa.select(rollouts.c.route).where(rollouts.c.project_id == _PID).with_for_update(read=True)
)
_BODIES_Q = sa.select(routes.c.name, routes.c.body).where(
    routes.c.project_id == _PID, routes.c.name.in_(_NAMES)
)
_WINDOWS_Q = sa.select(
    rollout_windows.c.route, rollout_windows.c.generation, rollout_windows.c.start_ts
).where(rollout_windows.c.project_id == _PID, rollout_windows.c.route.in_(_NAMES))


def _rollouts(
    db: Database, conn: Connection, project_id: int, names: Iterable[str]
) -> dict[str, _Rollout]:
    """The routes among ``names`` whose rollout counts evidence, with their windows."""
    wanted = sorted(set(names))
    if not wanted:
        return {}
    query = _ROLLOUTS_SHARED_Q if db.dialect == "postgresql" else _ROLLOUTS_Q
    params = {"pid": project_id, "names": wanted}
    found = {str(r[0]): (int(r[1]), str(r[2])) for r in conn.execute(query, params)}
    if not found:
        return {}
    params["names"] = sorted(found)
    bodies = dict(conn.execute(_BODIES_Q, params).all())
    windows: dict[str, list[float]] = {}
    for route, generation, start in conn.execute(_WINDOWS_Q, params):
        if found[str(route)][0] == int(generation):
            windows.setdefault(str(route), []).append(float(start))
    out = {}
    for route, (generation, variant) in found.items():
        if route not in windows:
            continue
        body = json.loads(bodies[route]) if route in bodies else {}
        out[route] = _Rollout(
            generation, (_control_name(body), variant), _unit_key(body), sorted(windows[route])
        )
    return out


def _control_name(route: Any) -> str:
    control = route.get("control") if isinstance(route, dict) else None
    return str((control or {}).get("name") or "control")


def _unit_key(route: Any) -> str:
    assignment = route.get("assignment") if isinstance(route, dict) else None
    return str((assignment or {}).get("unit") or "user_id")


def lock_rollouts(db: Database, conn: Connection, project_id: int) -> None:
    """Share-lock the project's rollout rows first thing in an ingest transaction (PostgreSQL).

    A transition locks its rollout row, then the project row (the config version);
    storing a call locks the project row too (its foreign key).  Taking the rollout
    rows first in ingest keeps that order everywhere, so the two queue instead of
    deadlocking.  No-op on SQLite (one writer at a time).

    Args:
        db: the database.
        conn: the ingest's write transaction, before it stores anything.
        project_id: the project.
    """
    if db.dialect == "postgresql":
        conn.execute(_LOCK_Q, {"pid": project_id}).all()


def counting(db: Database, conn: Connection, project_id: int, names: Iterable[str]) -> Counting:
    """Return which of the routes ``names`` have a rollout whose evidence is counted.

    Args:
        db: the database.
        conn: the write transaction storing the calls (on PostgreSQL the rollout
            rows are share-locked until it ends).
        project_id: the project.
        names: route names of the calls about to be counted.

    Returns:
        An opaque mapping for :func:`add_calls`; empty (falsy) when none has.
    """
    return _rollouts(db, conn, project_id, names)


def add_calls(
    db: Database,
    conn: Connection,
    project_id: int,
    facts: Sequence[CallFacts],
    ros: Counting | None = None,
) -> None:
    """Count newly stored calls into their rollout's windows (in the storing transaction).

    Args:
        db: the database.
        conn: the write transaction that stored the calls.
        project_id: the project.
        facts: the calls just stored (calls of routes without a counting rollout,
            of other arms, or from before the canary are skipped).
        ros: what :func:`counting` returned for their routes (default: looked up).
    """
    if ros is None:
        ros = _rollouts(db, conn, project_id, {f.route for f in facts})
    if not ros:
        return
    deltas: dict[str, _Delta] = {}
    for f in facts:
        ro = ros.get(f.route)
        if ro is None or f.arm not in ro.arms:
            continue
        window = ro.window_of(f.ts)
        if window is not None:
            deltas.setdefault(f.route, _Delta()).add_call(ro, window, f)
    for route, delta in deltas.items():
        _write(db, conn, _key(project_id, route, ros[route].generation), delta)


def change_outcomes(
    db: Database,
    conn: Connection,
    project_id: int,
    changes: Sequence[tuple[CallFacts, str | None]],
) -> None:
    """Move calls whose latest feedback changed from their old verdict to the new one.

    Args:
        db: the database.
        conn: the write transaction that stored the feedback.
        project_id: the project.
        changes: ``(call with its new outcome, its previous outcome)`` pairs.
    """
    changes = [(c, old) for c, old in changes if not c.failed and c.outcome != old]
    ros = _rollouts(db, conn, project_id, {c.route for c, _ in changes})
    if not ros:
        return
    deltas: dict[str, _Delta] = {}
    for c, old in changes:
        ro = ros.get(c.route)
        window = None if ro is None or c.arm not in ro.arms else ro.window_of(c.ts)
        if window is None:
            continue
        delta = deltas.setdefault(c.route, _Delta())
        key = (window, c.arm)
        if old in _VERDICTS:
            delta.count(key, "feedback", -1)
            delta.count(key, "successes", -(old == "success"))
        if c.outcome in _VERDICTS:
            delta.count(key, "feedback")
            delta.count(key, "successes", c.outcome == "success")
    for route, delta in deltas.items():
        _write(db, conn, _key(project_id, route, ros[route].generation), delta)


_UPSERTS: dict[tuple[str, str], Any] = {}


def _upsert(db: Database, table: sa.Table, keys: Sequence[str], added: Sequence[str]) -> Any:
    """``INSERT … ON CONFLICT DO UPDATE`` adding ``added`` (built once per dialect and table)."""
    cached = _UPSERTS.get((db.dialect, table.name))
    if cached is None:
        cached = _UPSERTS[(db.dialect, table.name)] = _build_upsert(db, table, keys, added)
    return cached


def _build_upsert(db: Database, table: sa.Table, keys: Sequence[str], added: Sequence[str]) -> Any:
    stmt = db.insert(table)
    sets: dict[str, Any] = {c: table.c[c] + stmt.excluded[c] for c in added}
    if "latency_min" in table.c:
        least, greatest = (
            (sa.func.least, sa.func.greatest)
            if db.dialect == "postgresql"
            else (sa.func.min, sa.func.max)
        )
        lo, hi = table.c.latency_min, table.c.latency_max
        new_lo, new_hi = stmt.excluded.latency_min, stmt.excluded.latency_max
        # SQLite's two-argument min() is NULL when either is: coalesce both sides.
        sets["latency_min"] = least(sa.func.coalesce(lo, new_lo), sa.func.coalesce(new_lo, lo))
        sets["latency_max"] = greatest(sa.func.coalesce(hi, new_hi), sa.func.coalesce(new_hi, hi))
    return stmt.on_conflict_do_update(index_elements=list(keys), set_=sets)


_ARM_KEY = ("project_id", "route", "generation", "window_start", "arm")


def _write(db: Database, conn: Connection, key: dict[str, Any], d: _Delta) -> None:
    # Rows in key order: concurrent transactions lock them in the same order (no deadlock).
    for (window, arm), units in sorted(d.units.items()):
        rows = [{**key, "window_start": window, "arm": arm, "unit": u} for u in sorted(units)]
        new = _insert_new(db, conn, rows)
        if new:
            d.count((window, arm), "units", new)
    if d.counts:
        rows = []
        for (window, arm), values in sorted(d.counts.items()):
            lo, hi = d.lat_range.get((window, arm), (None, None))
            rows.append({**key, "window_start": window, "arm": arm,
                         **dict(zip(_COUNTS, values, strict=True)),
                         "latency_min": lo, "latency_max": hi})  # fmt: skip
        conn.execute(_upsert(db, rollout_arm_stats, _ARM_KEY, _COUNTS), rows)
    if d.latency:
        rows = [
            {**key, "window_start": w, "arm": arm, "bucket": b, "n": n}
            for (w, arm, b), n in sorted(d.latency.items())
        ]
        conn.execute(_upsert(db, rollout_latency, (*_ARM_KEY, "bucket"), ("n",)), rows)
    if d.cost:
        rows = [
            {**key, "window_start": w, "arm": arm, "model": model,
             **dict(zip(("n", *_MOMENTS), m, strict=True))}
            for (w, arm, model), m in sorted(d.cost.items())
        ]  # fmt: skip
        conn.execute(_upsert(db, rollout_cost_stats, (*_ARM_KEY, "model"), ("n", *_MOMENTS)), rows)


def _insert_new(db: Database, conn: Connection, rows: list[dict[str, Any]]) -> int:
    """Insert unit rows, skipping those already there; return how many were new."""
    cols = [c.name for c in rollout_units.columns]
    params = [tuple(r[c] for c in cols) for r in rows]
    if db.dialect == "sqlite":
        marks = ", ".join("?" * len(cols))
        sql = f"INSERT OR IGNORE INTO rollout_units ({', '.join(cols)}) VALUES ({marks})"
        return int(conn.exec_driver_sql(sql, params).rowcount)
    sql = (
        f"INSERT INTO rollout_units ({', '.join(cols)}) VALUES ({', '.join(['%s'] * len(cols))}) "
        "ON CONFLICT DO NOTHING RETURNING 1"
    )
    raw = conn.connection.driver_connection
    assert raw is not None
    new = 0
    with raw.cursor() as cur:
        cur.executemany(sql, params, returning=True)
        while True:
            new += len(cur.fetchall())
            if not cur.nextset():
                break
    return new


# -- windows ------------------------------------------------------------------


def open_windows(
    db: Database,
    conn: Connection,
    project_id: int,
    route: str,
    generation: int,
    starts: Iterable[float],
) -> None:
    """Make sure windows start at each of ``starts``; rebuild what a late window splits.

    Called in the transaction that saves the rollout.  Unit rows of the windows
    before the latest are dropped (only the latest window's units are read).

    Args:
        db: the database.
        conn: the write transaction.
        project_id: the project.
        route: the route.
        generation: the rollout's generation.
        starts: the window starts the engine will read from.
    """
    key = _key(project_id, route, generation)
    if db.dialect == "postgresql":
        # The rollout row first, as a transition and ingest take it: two openings (a
        # transition and an evidence read) then queue instead of deadlocking on the
        # window rows each inserted.
        conn.execute(
            sa.select(rollouts.c.route)
            .where(rollouts.c.project_id == project_id, rollouts.c.route == route)
            .with_for_update()
        )
    w = rollout_windows.c
    where = (w.project_id == project_id, w.route == route, w.generation == generation)
    have = {float(x) for x in conn.execute(sa.select(w.start_ts).where(*where)).scalars()}
    new = sorted(set(starts) - have)
    if not new:
        return
    conn.execute(rollout_windows.insert(), [{**key, "start_ts": s} for s in new])
    ro = _rollouts(db, conn, project_id, [route]).get(route)
    if ro is None or ro.generation != generation:
        return
    # The first window ever, or calls stored after a new window's start: recount from the
    # window the earliest new start splits (all of them when none was kept yet).
    earlier = [s for s in have if s <= new[0]]
    rebuild_from = max(earlier) if earlier else None
    first = new[0] if rebuild_from is None else rebuild_from
    later = conn.execute(
        sa.select(sa.literal(1))
        .where(
            calls.c.project_id == project_id,
            calls.c.route == route,
            calls.c.variant.in_(ro.arms),
            calls.c.ts >= new[0],
        )
        .limit(1)
    ).first()
    if later is not None or not have:
        _rebuild(db, conn, project_id, route, ro, first)
    _drop_old_units(conn, key, ro.windows[-1])


def _drop_old_units(conn: Connection, key: dict[str, Any], latest: float) -> None:
    u = rollout_units.c
    conn.execute(
        rollout_units.delete().where(
            u.project_id == key["project_id"],
            u.route == key["route"],
            u.generation == key["generation"],
            u.window_start < latest,
        )
    )


def _rebuild(
    db: Database, conn: Connection, project_id: int, route: str, ro: _Rollout, start: float
) -> None:
    """Recount every window starting at or after ``start`` from the stored calls."""
    key = _key(project_id, route, ro.generation)
    for table in (rollout_arm_stats, rollout_latency, rollout_cost_stats, rollout_units):
        conn.execute(
            table.delete().where(
                table.c.project_id == project_id,
                table.c.route == route,
                table.c.generation == ro.generation,
                table.c.window_start >= start,
            )
        )
    columns = [
        calls.c.variant, calls.c.ts, calls.c.is_error, calls.c.fallback, calls.c.latency_ms,
        calls.c.input_tokens, calls.c.output_tokens, calls.c.outcome, calls.c.record,
        sa.func.coalesce(calls.c.served_model, calls.c.requested_model).label("model"),
    ]  # fmt: skip
    f = queries.CallFilter(route=route, since=start, variants=ro.arms)
    delta = _Delta()
    for r in queries.scan(db, project_id, f, columns, conn=conn):
        window = ro.window_of(float(r.ts))
        if window is None:
            continue
        meta = json.loads(r.record).get("metadata") if window == ro.windows[-1] else None
        delta.add_call(ro, window, CallFacts(
            route, str(r.variant), float(r.ts), bool(r.is_error) or bool(r.fallback), r.model,
            r.input_tokens, r.output_tokens, r.latency_ms, r.outcome, meta,
        ))  # fmt: skip
    _write(db, conn, key, delta)


# -- reading ------------------------------------------------------------------


@dataclass
class ArmTotals:
    """One arm's sums over a set of windows.

    Attributes:
        calls: calls.
        errors: failed calls (errors and fallbacks).
        feedback: successful calls with a success/failure verdict.
        successes: of those, successes.
        units: distinct units (latest window only).
        unitless: calls without a unit (latest window only).
        cost: per model, ``[n, tok_in, tok_out, tok_in2, tok_inout, tok_out2]``.
        latency: the latency sketch of the successful calls.
    """

    calls: int = 0
    errors: int = 0
    feedback: int = 0
    successes: int = 0
    units: int = 0
    unitless: int = 0
    cost: dict[str | None, list[float]] = field(default_factory=dict)
    latency: LatencySketch = field(default_factory=LatencySketch)


@dataclass
class Totals:
    """Both arms since the canary began, and their calls / units in the SRM window."""

    cumulative: dict[str, ArmTotals]
    stage: dict[str, ArmTotals]


def read(
    db: Database,
    project_id: int,
    route: str,
    arms: tuple[str, str],
    since: float,
    stage_from: float | None,
) -> Totals:
    """Sum a route's current rollout's windows (cost independent of how many calls).

    Windows are opened (and, on a database upgraded mid-canary, counted from the
    calls) first when the rollout has none yet.

    Args:
        db: the database.
        project_id: the project.
        route: the route.
        arms: ``(control, variant)`` arm names.
        since: the canary's start (windows starting at or after it).
        stage_from: the SRM window's start (windows starting at or after it), or None.

    Returns:
        The sums; arms without calls are zero.
    """
    with db.read() as conn:
        generation = conn.execute(
            sa.select(rollouts.c.generation).where(
                rollouts.c.project_id == project_id, rollouts.c.route == route
            )
        ).scalar()
        g = int(generation or 0)
        w = rollout_windows.c
        starts = {
            float(x)
            for x in conn.execute(
                sa.select(w.start_ts).where(
                    w.project_id == project_id, w.route == route, w.generation == g
                )
            ).scalars()
        }
    wanted = {since} | ({stage_from} if stage_from is not None else set())
    if not wanted <= starts:
        with db.write() as conn:
            open_windows(db, conn, project_id, route, g, wanted)
    with db.read() as conn:
        cumulative = _sum(conn, project_id, route, g, arms, since, latency=True)
        stage = (
            _sum(conn, project_id, route, g, arms, stage_from, latency=False)
            if stage_from is not None
            else {}
        )
    return Totals(cumulative, stage)


def _sum(
    conn: Connection,
    project_id: int,
    route: str,
    generation: int,
    arms: tuple[str, str],
    start: float,
    latency: bool,
) -> dict[str, ArmTotals]:
    out = {arm: ArmTotals() for arm in arms}

    def where(t: sa.Table) -> tuple[Any, ...]:
        return (t.c.project_id == project_id, t.c.route == route, t.c.generation == generation,
                t.c.window_start >= start, t.c.arm.in_(arms))  # fmt: skip

    a = rollout_arm_stats.c
    q = sa.select(a.arm, *(sa.func.sum(a[c]) for c in _COUNTS),
                  sa.func.min(a.latency_min), sa.func.max(a.latency_max)).where(
        *where(rollout_arm_stats)).group_by(a.arm)  # fmt: skip
    ranges: dict[str, tuple[float, float]] = {}
    for row in conn.execute(q):
        t = out[str(row[0])]
        t.calls, t.errors, t.feedback, t.successes, t.units, t.unitless = (
            int(x or 0) for x in row[1:7]
        )
        if row[7] is not None:
            ranges[str(row[0])] = (float(row[7]), float(row[8]))
    if not latency:
        return out
    c = rollout_cost_stats.c
    q = sa.select(c.arm, c.model, sa.func.sum(c.n), *(sa.func.sum(c[m]) for m in _MOMENTS)).where(
        *where(rollout_cost_stats)).group_by(c.arm, c.model)  # fmt: skip
    for row in conn.execute(q):
        out[str(row[0])].cost[str(row[1]) or None] = [float(x or 0) for x in row[2:]]
    lt = rollout_latency.c
    q = sa.select(lt.arm, lt.bucket, sa.func.sum(lt.n)).where(*where(rollout_latency)).group_by(
        lt.arm, lt.bucket)  # fmt: skip
    buckets: dict[str, list[tuple[int, int]]] = {}
    for lrow in conn.execute(q):
        buckets.setdefault(str(lrow[0]), []).append((int(lrow[1]), int(lrow[2])))
    for name, pairs in buckets.items():
        lo, hi = ranges.get(name, (0.0, 0.0))
        out[name].latency = LatencySketch(tuple(sorted(p for p in pairs if p[1] > 0)), lo, hi)
    return out
