"""Storing records: idempotent inserts, per-record results, feedback joins.

A batch is validated record by record; valid records are inserted with
``ON CONFLICT DO NOTHING … RETURNING id`` in one transaction, so a resent
batch (at-least-once delivery) stores nothing twice and says ``duplicate``.
Ids are per project: another project's ids are neither refused nor revealed
(feedback on an id only another project has waits, unjoined, like feedback on
an id that has not arrived yet).
Feedback is joined to its call by the call's id or its provider response id;
feedback whose call has not arrived yet is kept with ``call_id`` NULL and
joined when the call comes.  The call row carries the latest joined
feedback (by ts, then id) so filters and stats need no join.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pydantic_core
import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.engine import Connection

from . import aggregates
from .db import Database
from .records import CallRecord, FeedbackRecord, parse_ts
from .schema import calls, feedback

_CHUNK = 500


@dataclass
class IngestResult:
    """Per-record results of one batch, in the order of the input."""

    results: list[dict[str, Any]] = field(default_factory=list)

    def count(self, status: str) -> int:
        """Return how many records ended with ``status``.

        Args:
            status: ``"ok"``, ``"duplicate"`` or ``"error"``.

        Returns:
            The count.
        """
        return sum(1 for r in self.results if r["status"] == status)

    def as_json(self) -> dict[str, Any]:
        """Return the response body of ``POST /v1/ingest``.

        Returns:
            ``{"results": [...], "accepted": n, "duplicates": n, "errors": n}``.
        """
        return {
            "results": self.results,
            "accepted": self.count("ok"),
            "duplicates": self.count("duplicate"),
            "errors": self.count("error"),
        }


def describe(exc: ValidationError) -> str:
    """Summarise a validation error in one line (at most five problems).

    Args:
        exc: the pydantic error.

    Returns:
        ``"field: message; …"``.
    """
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err["loc"]) or "record"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


class RecordRefused(ValueError):
    """A record that cannot be stored as it is (too large, or not finite JSON)."""


def _dumps(obj: Any, max_bytes: int | None = None) -> str:
    """The record's JSON text, checked: finite numbers only, at most ``max_bytes``."""
    try:
        # The Rust serialiser is ~4x faster than json.dumps on large records.
        data = pydantic_core.to_json(obj)
    except (ValueError, UnicodeError):  # lone surrogates: let json escape them
        try:
            text = json.dumps(obj, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
        except ValueError:
            raise RecordRefused(_NOT_FINITE) from None
        _check_size(obj, len(text), max_bytes)
        return text
    if (b"NaN" in data or b"Infinity" in data) and not _finite(obj):
        # 1e999 in a body parses as infinity, which JSON cannot spell: refused here
        # rather than stored as Infinity (and then unreadable by every listing).
        raise RecordRefused(_NOT_FINITE)
    _check_size(obj, len(data), max_bytes)
    return data.decode("utf-8")


_NOT_FINITE = "record holds a number JSON cannot represent (NaN, or out of range like 1e999)"


def _finite(obj: Any) -> bool:
    try:
        json.dumps(obj, allow_nan=False)
    except ValueError:
        return False
    return True


def _check_size(obj: Any, size: int, max_bytes: int | None) -> None:
    if max_bytes is None or size <= max_bytes:
        return
    # Measured the way the client measures before it truncates (json.dumps, compact,
    # UTF-8), which can be shorter than the Rust text (1e-05 against 0.00001): a
    # record the client kept under its max_record_bytes is never refused.
    try:
        exact = len(
            json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
        )
    except UnicodeError:
        exact = size
    if exact > max_bytes:
        raise RecordRefused(
            f"record is {exact} bytes; the limit is {max_bytes} bytes "
            "(the client truncates records above its max_record_bytes before sending)"
        )


def _call_row(
    project_id: int, rec: CallRecord, raw: dict[str, Any], now: float, max_bytes: int | None
) -> dict[str, Any]:
    usage = rec.usage
    return {
        "id": rec.id,
        "project_id": project_id,
        "ts": parse_ts(rec.ts),
        "dataset": rec.dataset,
        "source": rec.source,
        "function": rec.function,
        "provider": rec.provider,
        "requested_model": rec.requested_model,
        "served_model": rec.served_model,
        "route": rec.route,
        "variant": rec.variant,
        "fallback": rec.fallback,
        "is_error": rec.error is not None,
        "response_id": rec.response_id,
        "input_tokens": usage.input_tokens if usage else None,
        "output_tokens": usage.output_tokens if usage else None,
        "latency_ms": rec.latency_ms,
        "ttft_ms": rec.ttft_ms,
        "outcome": None,
        "score": None,
        "feedback_count": 0,
        "received_at": now,
        "record": _dumps(raw, max_bytes),
    }


def _feedback_row(
    project_id: int, rec: FeedbackRecord, raw: dict[str, Any], now: float, max_bytes: int | None
) -> dict[str, Any]:
    return {
        "id": rec.id,
        "project_id": project_id,
        "ts": parse_ts(rec.ts),
        "target": rec.target,
        "call_id": None,
        "outcome": rec.outcome,
        "score": rec.score,
        "received_at": now,
        "record": _dumps(raw, max_bytes),
    }


def _chunks(items: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), _CHUNK):
        yield items[i : i + _CHUNK]


def ingest(
    db: Database, project_id: int, records: Sequence[Any], max_record_bytes: int | None = None
) -> IngestResult:
    """Validate and store a batch of records for one project.

    Args:
        db: the database.
        project_id: the caller's project.
        records: decoded JSON values (each should be a record object).
        max_record_bytes: refuse (per record) a record whose JSON is larger.

    Returns:
        One result per input record: ``ok``, ``duplicate`` or ``error``.
    """
    out = IngestResult([{"id": None, "status": "error", "error": None} for _ in records])
    now = time.time()
    call_rows: list[tuple[int, dict[str, Any]]] = []
    fb_rows: list[tuple[int, dict[str, Any]]] = []
    seen: set[tuple[str, str]] = set()
    for i, raw in enumerate(records):
        res = out.results[i]
        if not isinstance(raw, dict):
            res["error"] = "record must be a JSON object"
            continue
        rid = raw.get("id")
        res["id"] = rid if isinstance(rid, str) else None
        kind = raw.get("type")
        try:
            if kind == "call":
                call = CallRecord.model_validate(raw)
                row = _call_row(project_id, call, raw, now, max_record_bytes)
            elif kind == "feedback":
                fb = FeedbackRecord.model_validate(raw)
                row = _feedback_row(project_id, fb, raw, now, max_record_bytes)
            else:
                res["error"] = "type: must be 'call' or 'feedback'"
                continue
        except ValidationError as exc:
            res["error"] = describe(exc)
            continue
        except ValueError as exc:  # e.g. a timestamp outside the representable range
            res["error"] = str(exc)
            continue
        if (kind, row["id"]) in seen:
            res["status"] = "duplicate"
            continue
        seen.add((kind, row["id"]))
        res["status"] = "ok"
        (call_rows if kind == "call" else fb_rows).append((i, row))

    if not call_rows and not fb_rows:
        return out
    statuses = [dict(r) for r in out.results]

    def store() -> None:
        # Re-run from the start when PostgreSQL picks this transaction as a
        # deadlock victim: the statuses of the aborted attempt are forgotten.
        out.results[:] = [dict(r) for r in statuses]
        with db.write() as conn:
            aggregates.lock_rollouts(db, conn, project_id)
            _insert(db, conn, calls, project_id, call_rows, out)
            new_calls = [row for i, row in call_rows if out.results[i]["status"] == "ok"]
            # Counted before feedback joins them: a joined verdict then moves like any other.
            names = {row["route"] for row in new_calls if row["route"] is not None}
            ros = aggregates.counting(db, conn, project_id, names) if names else None
            if ros:
                routed = [
                    _facts(row, records[i].get("metadata"))
                    for i, row in call_rows
                    if row["route"] in ros and out.results[i]["status"] == "ok"
                ]
                aggregates.add_calls(db, conn, project_id, routed, ros)
            _insert(db, conn, feedback, project_id, fb_rows, out)
            new_fb = [row for i, row in fb_rows if out.results[i]["status"] == "ok"]
            join_pending(conn, project_id, new_calls, new_fb, db)

    db.retrying(store)
    return out


def _facts(row: dict[str, Any], metadata: Any) -> aggregates.CallFacts:
    return aggregates.CallFacts(
        route=row["route"],
        arm=row["variant"],
        ts=row["ts"],
        failed=bool(row["is_error"] or row["fallback"]),
        model=row["served_model"] or row["requested_model"],
        input_tokens=row["input_tokens"],
        output_tokens=row["output_tokens"],
        latency_ms=row["latency_ms"],
        outcome=row["outcome"],
        metadata=metadata,
    )


def _insert(
    db: Database,
    conn: Connection,
    table: sa.Table,
    project_id: int,
    rows: list[tuple[int, dict[str, Any]]],
    out: IngestResult,
) -> None:
    rows = [(i, row) for i, row in rows if out.results[i]["status"] == "ok"]
    if not rows:
        return
    inserted: set[str] = set()
    if db.dialect == "sqlite":
        # The write transaction holds SQLite's only write lock, so no other
        # writer can insert between this check and the insert below; a plain
        # executemany is several times faster than INSERT … RETURNING.
        have: set[str] = set()
        for chunk in _chunks([row["id"] for _, row in rows]):
            query = sa.select(table.c.id).where(
                table.c.project_id == project_id, table.c.id.in_(chunk)
            )
            have.update(str(r[0]) for r in conn.execute(query))
        fresh = [row for _, row in rows if row["id"] not in have]
        if fresh:
            # Straight to the driver: SQLAlchemy's per-row bind processing
            # costs more than the insert itself here.
            cols = [c.name for c in table.columns]
            sql = (
                f"INSERT INTO {table.name} ({', '.join(cols)}) "
                f"VALUES ({', '.join('?' for _ in cols)})"
            )
            conn.exec_driver_sql(sql, [tuple(row[c] for c in cols) for row in fresh])
        inserted = {row["id"] for row in fresh}
    else:
        inserted = _insert_postgres(conn, table, _in_lock_order([row for _, row in rows]))
    for i, row in rows:
        if row["id"] not in inserted:
            out.results[i]["status"] = "duplicate"


def _in_lock_order(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows sorted by id, the order every writer takes their locks in.

    Two concurrent batches holding the same ids in opposite orders would each
    lock a row the other waits for (PostgreSQL: "deadlock detected"); with
    one order, the second simply waits for the first.
    """
    return sorted(rows, key=lambda row: str(row["id"]))


def _insert_postgres(conn: Connection, table: sa.Table, rows: list[dict[str, Any]]) -> set[str]:
    # psycopg's executemany (pipelined, one cached single-row statement) is far
    # cheaper than a 500-row VALUES list that psycopg re-parses per batch.
    # ON CONFLICT keeps a concurrent duplicate out; RETURNING says which rows
    # were new.
    cols = [c.name for c in table.columns]
    sql = (
        f"INSERT INTO {table.name} ({', '.join(cols)}) VALUES ({', '.join('%s' for _ in cols)}) "
        "ON CONFLICT (project_id, id) DO NOTHING RETURNING id"
    )
    raw = conn.connection.driver_connection
    assert raw is not None
    inserted: set[str] = set()
    with raw.cursor() as cur:
        cur.executemany(sql, [tuple(row[c] for c in cols) for row in rows], returning=True)
        while True:
            inserted.update(str(r[0]) for r in cur.fetchall())
            if not cur.nextset():
                break
    return inserted


def join_pending(
    conn: Connection,
    project_id: int,
    new_calls: Sequence[dict[str, Any]],
    new_feedback: Sequence[dict[str, Any]],
    db: Database | None = None,
) -> set[str]:
    """Join unjoined feedback to calls after new calls and/or feedback arrived.

    Args:
        conn: a connection inside the write transaction.
        project_id: the project.
        new_calls: rows of calls just inserted.
        new_feedback: rows of feedback just inserted.
        db: the database (its rollouts' evidence follows the changed verdicts).

    Returns:
        Ids of the calls whose feedback summary changed.
    """
    keys: set[str] = {row["target"] for row in new_feedback}
    for row in new_calls:
        keys.add(row["id"])
        if row["response_id"]:
            keys.add(row["response_id"])
    if not keys:
        return set()
    pending: list[tuple[str, str]] = []
    for chunk in _chunks(sorted(keys)):
        query = sa.select(feedback.c.id, feedback.c.target).where(
            feedback.c.project_id == project_id,
            feedback.c.call_id.is_(None),
            feedback.c.target.in_(chunk),
        )
        pending.extend((str(r[0]), str(r[1])) for r in conn.execute(query))
    if not pending:
        return set()
    targets = sorted({t for _, t in pending})
    by_id: dict[str, str] = {}
    by_response: dict[str, tuple[float, str]] = {}
    for chunk in _chunks(targets):
        query = sa.select(calls.c.id, calls.c.response_id, calls.c.ts).where(
            calls.c.project_id == project_id,
            sa.or_(calls.c.id.in_(chunk), calls.c.response_id.in_(chunk)),
        )
        for found in conn.execute(query):
            cid, ts = str(found[0]), float(found[2])
            rid: str | None = found[1]
            by_id[cid] = cid
            # A response id seen on several calls (a retried stream, say)
            # joins the earliest one.
            if rid is not None:
                key = str(rid)
                if key not in by_response or (ts, cid) < by_response[key]:
                    by_response[key] = (ts, cid)
    updates = []
    for fid, target in pending:
        match = by_id.get(target) or (by_response[target][1] if target in by_response else None)
        if match is not None:
            updates.append({"fid": fid, "cid": match})
    if not updates:
        return set()
    conn.execute(
        feedback.update()
        .where(feedback.c.project_id == project_id, feedback.c.id == sa.bindparam("fid"))
        .values(call_id=sa.bindparam("cid")),
        updates,
    )
    touched = {u["cid"] for u in updates}
    refresh_summaries(conn, project_id, touched, db)
    return touched


def refresh_summaries(
    conn: Connection, project_id: int, call_ids: Iterable[str], db: Database | None = None
) -> None:
    """Recompute each call's outcome, score and feedback count from its feedback.

    Args:
        conn: a connection inside a write transaction.
        project_id: the project.
        call_ids: the calls to refresh.
        db: the database; when given, the evidence of the calls' rollouts follows
            each changed verdict (:func:`.aggregates.change_outcomes`).
    """
    ids = sorted(set(call_ids))
    latest: dict[str, tuple[float, str, str, float | None]] = {}
    counts: dict[str, int] = {}
    for chunk in _chunks(ids):
        query = sa.select(
            feedback.c.call_id, feedback.c.ts, feedback.c.id, feedback.c.outcome, feedback.c.score
        ).where(feedback.c.project_id == project_id, feedback.c.call_id.in_(chunk))
        for cid, ts, fid, outcome, score in conn.execute(query):
            counts[cid] = counts.get(cid, 0) + 1
            cand = (float(ts), str(fid), str(outcome), score)
            if cid not in latest or cand[:2] > latest[cid][:2]:
                latest[cid] = cand
    params = [
        {"cid": cid, "o": latest[cid][2], "s": latest[cid][3], "n": counts[cid]}
        for cid in ids
        if cid in latest
    ]
    if params and db is not None:
        _move_verdicts(db, conn, project_id, {cid: latest[cid][2] for cid in ids if cid in latest})
    if params:
        conn.execute(
            calls.update()
            .where(calls.c.project_id == project_id, calls.c.id == sa.bindparam("cid"))
            .values(
                outcome=sa.bindparam("o"), score=sa.bindparam("s"), feedback_count=sa.bindparam("n")
            ),
            params,
        )


def _move_verdicts(db: Database, conn: Connection, project_id: int, new: dict[str, str]) -> None:
    """Tell the evidence aggregates which routed calls' latest verdict changes (before it does)."""
    changes: list[tuple[aggregates.CallFacts, str | None]] = []
    cols = (calls.c.id, calls.c.route, calls.c.variant, calls.c.ts, calls.c.is_error,
            calls.c.fallback, calls.c.outcome)  # fmt: skip
    for chunk in _chunks(sorted(new)):
        query = sa.select(*cols).where(
            calls.c.project_id == project_id, calls.c.id.in_(chunk), calls.c.route.is_not(None)
        )
        for r in conn.execute(query):
            if r.variant is None or r.outcome == new[r.id]:
                continue
            fact = aggregates.CallFacts(
                str(r.route), str(r.variant), float(r.ts), bool(r.is_error) or bool(r.fallback),
                None, None, None, None, new[r.id],
            )  # fmt: skip
            changes.append((fact, r.outcome))
    if changes:
        aggregates.change_outcomes(db, conn, project_id, changes)
