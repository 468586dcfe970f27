"""Read-side queries: datasets, call listings, export streams, and the one calls scan.

Listings use keyset pagination on ``(ts, id)``: the cursor is the last row's
key, so a page costs the same however deep it is and rows inserted meanwhile
are neither skipped nor repeated.  Exports walk the same keyset in pages, so
no database cursor stays open while the client reads slowly.
"""

from __future__ import annotations

import base64
import binascii
import collections
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from logos_shift.export import to_openai_chat

from .db import Database
from .schema import calls, feedback

_PAGE = 500


@dataclass(frozen=True)
class CallFilter:
    """Which calls a listing, an export or an internal scan reads.

    Attributes:
        dataset: only this dataset's calls.
        route: only calls routed by this route.
        since: only calls at or after this Unix time.
        until: only calls before this Unix time.
        outcome: latest feedback ``success``, ``failure``, ``neutral``, or
            ``none`` (no feedback).
        variant: only calls served by this arm.
        variants: only calls served by one of these arms.
        model: served or requested model.
        min_score: latest feedback score at least this.
        failed: True: only calls that failed or fell back; False: only the others.
    """

    dataset: str | None = None
    since: float | None = None
    until: float | None = None
    outcome: str | None = None  # success | failure | neutral | none
    variant: str | None = None
    model: str | None = None
    min_score: float | None = None
    route: str | None = None
    variants: tuple[str, ...] | None = None
    failed: bool | None = None


def encode_cursor(ts: float, call_id: str) -> str:
    """Encode a page position as an opaque cursor.

    Args:
        ts: the last row's timestamp.
        call_id: the last row's id.

    Returns:
        URL-safe text.
    """
    raw = json.dumps([ts, call_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, str]:
    """Decode a cursor made by :func:`encode_cursor`.

    Args:
        cursor: the opaque text.

    Returns:
        ``(ts, id)``.

    Raises:
        ValueError: for a cursor this server did not make.
    """
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        ts, call_id = json.loads(raw)
    except (ValueError, TypeError, binascii.Error):
        raise ValueError("invalid cursor") from None
    if not isinstance(ts, (int, float)) or isinstance(ts, bool) or not isinstance(call_id, str):
        raise ValueError("invalid cursor")
    return float(ts), call_id


def _where(project_id: int, f: CallFilter) -> list[Any]:
    cond: list[Any] = [calls.c.project_id == project_id]
    if f.dataset is not None:
        cond.append(calls.c.dataset == f.dataset)
    if f.route is not None:
        cond.append(calls.c.route == f.route)
    if f.since is not None:
        cond.append(calls.c.ts >= f.since)
    if f.until is not None:
        cond.append(calls.c.ts < f.until)
    if f.outcome == "none":
        cond.append(calls.c.outcome.is_(None))
    elif f.outcome is not None:
        cond.append(calls.c.outcome == f.outcome)
    if f.variant is not None:
        cond.append(calls.c.variant == f.variant)
    if f.variants is not None:
        cond.append(calls.c.variant.in_(f.variants))
    if f.model is not None:
        cond.append(sa.or_(calls.c.served_model == f.model, calls.c.requested_model == f.model))
    if f.min_score is not None:
        cond.append(calls.c.score >= f.min_score)
    if f.failed is not None:
        failed = sa.or_(calls.c.is_error, calls.c.fallback)
        cond.append(failed if f.failed else sa.not_(failed))
    return cond


def scan(
    db: Database,
    project_id: int,
    f: CallFilter,
    columns: Sequence[sa.ColumnElement[Any]] | None = None,
) -> Iterator[Any]:
    """Stream every call matching ``f`` (the server's one calls scan).

    Rows come in no particular order, in one read transaction, fetched in
    batches so memory stays flat however many calls match.

    Args:
        db: the database.
        project_id: the project.
        f: which calls.
        columns: the columns to read (default: every column of ``calls``).

    Yields:
        Result rows (attribute access by column name or label).
    """
    query = sa.select(*(columns if columns is not None else calls.c)).where(*_where(project_id, f))
    with db.read() as conn:
        yield from conn.execution_options(yield_per=_PAGE).execute(query)


def list_datasets(db: Database, project_id: int) -> list[dict[str, Any]]:
    """Summarise each dataset of the project.

    Args:
        db: the database.
        project_id: the project.

    Returns:
        ``[{"name", "calls", "with_feedback", "first_ts", "last_ts"}]`` by name.
    """
    query = (
        sa.select(
            calls.c.dataset,
            sa.func.count(),
            sa.func.sum(sa.case((calls.c.feedback_count > 0, 1), else_=0)),
            sa.func.min(calls.c.ts),
            sa.func.max(calls.c.ts),
        )
        .where(calls.c.project_id == project_id)
        .group_by(calls.c.dataset)
        .order_by(calls.c.dataset)
    )
    with db.read() as conn:
        rows = conn.execute(query).all()
    return [
        {
            "name": name,
            "calls": int(n),
            "with_feedback": int(fb or 0),
            "first_ts": float(first),
            "last_ts": float(last),
        }
        for name, n, fb, first, last in rows
    ]


def _page(
    db: Database,
    project_id: int,
    f: CallFilter,
    after: tuple[float, str] | None,
    limit: int,
    newest_first: bool = False,
) -> list[Any]:
    cond = _where(project_id, f)
    if after is not None:
        ts, cid = after
        if newest_first:
            cond.append(sa.or_(calls.c.ts < ts, sa.and_(calls.c.ts == ts, calls.c.id < cid)))
        else:
            cond.append(sa.or_(calls.c.ts > ts, sa.and_(calls.c.ts == ts, calls.c.id > cid)))
    order = (calls.c.ts.desc(), calls.c.id.desc()) if newest_first else (calls.c.ts, calls.c.id)
    query = (
        sa.select(
            calls.c.id,
            calls.c.ts,
            calls.c.record,
            calls.c.outcome,
            calls.c.score,
            calls.c.feedback_count,
        )
        .where(*cond)
        .order_by(*order)
        .limit(limit)
    )
    with db.read() as conn:
        return list(conn.execute(query).all())


def list_calls(
    db: Database,
    project_id: int,
    f: CallFilter,
    cursor: str | None,
    limit: int,
    newest_first: bool = False,
) -> dict[str, Any]:
    """Return one page of a dataset's calls, oldest first (or newest first).

    Args:
        db: the database.
        project_id: the project.
        f: filters.
        cursor: ``next_cursor`` of the previous page, or None for the first.
        limit: page size.
        newest_first: walk from the newest call back (the cursor continues
            in the order it was made in).

    Returns:
        ``{"calls": [{"record", "feedback": {"outcome", "score", "count"}}],
        "next_cursor": str | None}``.

    Raises:
        ValueError: for an invalid cursor.
    """
    after = decode_cursor(cursor) if cursor else None
    rows = _page(db, project_id, f, after, limit + 1, newest_first)
    more = len(rows) > limit
    rows = rows[:limit]
    items = [
        {
            "record": json.loads(r.record),
            "feedback": {"outcome": r.outcome, "score": r.score, "count": int(r.feedback_count)},
        }
        for r in rows
    ]
    nxt = encode_cursor(float(rows[-1].ts), str(rows[-1].id)) if more and rows else None
    return {"calls": items, "next_cursor": nxt}


def get_call(db: Database, project_id: int, ident: str) -> dict[str, Any] | None:
    """Return one call by its id (or its provider response id) with all its feedback.

    Args:
        db: the database.
        project_id: the project.
        ident: the logos-shift call id or the provider's response id.

    Returns:
        ``{"record", "feedback": {"outcome", "score", "count"}, "feedback_events":
        [feedback records, oldest first]}``, or None when the project has no such call.
    """
    with db.read() as conn:
        row = conn.execute(
            sa.select(
                calls.c.id, calls.c.record, calls.c.outcome, calls.c.score, calls.c.feedback_count
            )
            .where(
                calls.c.project_id == project_id,
                sa.or_(calls.c.id == ident, calls.c.response_id == ident),
            )
            .order_by(calls.c.ts)
            .limit(1)
        ).first()
        if row is None:
            return None
        events = conn.execute(
            sa.select(feedback.c.record)
            .where(feedback.c.project_id == project_id, feedback.c.call_id == row.id)
            .order_by(feedback.c.ts, feedback.c.id)
        ).scalars()
        return {
            "record": json.loads(row.record),
            "feedback": {
                "outcome": row.outcome,
                "score": row.score,
                "count": int(row.feedback_count),
            },
            "feedback_events": [json.loads(e) for e in events],
        }


def pending_feedback(db: Database, project_id: int, limit: int) -> dict[str, Any]:
    """Return the feedback whose call has not arrived (yet), oldest first.

    Feedback is kept and joined whenever its call arrives, however late; one
    that waits for long usually names a wrong id.

    Args:
        db: the database.
        project_id: the project.
        limit: most rows returned.

    Returns:
        ``{"count": n, "feedback": [{"id", "target", "outcome", "score", "ts",
        "received_at"}]}``.
    """
    waiting = sa.and_(feedback.c.project_id == project_id, feedback.c.call_id.is_(None))
    with db.read() as conn:
        count = conn.execute(sa.select(sa.func.count()).where(waiting)).scalar_one()
        rows = conn.execute(
            sa.select(
                feedback.c.id,
                feedback.c.target,
                feedback.c.outcome,
                feedback.c.score,
                feedback.c.ts,
                feedback.c.received_at,
            )
            .where(waiting)
            .order_by(feedback.c.received_at, feedback.c.id)
            .limit(limit)
        ).all()
    return {
        "count": int(count),
        "feedback": [
            {
                "id": r.id,
                "target": r.target,
                "outcome": r.outcome,
                "score": r.score,
                "ts": float(r.ts),
                "received_at": float(r.received_at),
            }
            for r in rows
        ],
    }


def route_has_calls(db: Database, project_id: int, route: str) -> bool:
    """Return whether any call of the project was routed by ``route``.

    Args:
        db: the database.
        project_id: the project.
        route: the route's name.

    Returns:
        True when at least one call names it.
    """
    with db.read() as conn:
        hit = conn.execute(
            sa.select(calls.c.id)
            .where(calls.c.project_id == project_id, calls.c.route == route)
            .limit(1)
        ).first()
    return hit is not None


def export_stream(db: Database, project_id: int, f: CallFilter, fmt: str) -> Iterator[bytes]:
    """Yield the export as JSONL bytes, one page of calls at a time.

    Args:
        db: the database.
        project_id: the project.
        f: filters.
        fmt: ``"raw"`` (records as ingested) or ``"openai-chat"``.

    Yields:
        Chunks of JSONL.
    """
    after: tuple[float, str] | None = None
    while True:
        rows = _page(db, project_id, f, after, _PAGE)
        if not rows:
            return
        lines = []
        for r in rows:
            if fmt == "raw":
                lines.append(r.record)
                continue
            example = to_openai_chat(json.loads(r.record))
            if example is not None:
                lines.append(json.dumps(example, ensure_ascii=False, separators=(",", ":")))
        if lines:
            yield ("\n".join(lines) + "\n").encode("utf-8")
        after = (float(rows[-1].ts), str(rows[-1].id))


def stats_rows(
    db: Database, project_id: int, route: str, since: float | None, until: float | None
) -> list[dict[str, Any]]:
    """Fetch the columns per-variant stats need for one route.

    Args:
        db: the database.
        project_id: the project.
        route: route name.
        since: only calls at or after this epoch time.
        until: only calls before this epoch time.

    Returns:
        Plain dict rows for :func:`..stats.variants.variant_stats`.
    """
    columns = [
        calls.c.variant,
        calls.c.is_error,
        calls.c.fallback,
        calls.c.latency_ms,
        calls.c.input_tokens,
        calls.c.output_tokens,
        sa.func.coalesce(calls.c.served_model, calls.c.requested_model).label("model"),
        calls.c.outcome,
        calls.c.feedback_count,
    ]
    f = CallFilter(route=route, since=since, until=until)
    return [dict(r._mapping) for r in scan(db, project_id, f, columns)]


def dataset_calls(
    db: Database, project_id: int, f: CallFilter
) -> tuple[list[tuple[dict[str, Any], dict[str, Any]]], collections.Counter[str]]:
    """Read calls with their feedback summary (for building a fine-tuning dataset).

    Args:
        db: the database.
        project_id: the project.
        f: which calls (a dataset and a time window).

    Returns:
        ``([(record, {"outcome", "score", "count"})], requested-model counts)``,
        oldest first.
    """
    columns = [calls.c.ts, calls.c.id, calls.c.record, calls.c.outcome, calls.c.score,
               calls.c.feedback_count, calls.c.requested_model]  # fmt: skip
    rows = sorted(scan(db, project_id, f, columns), key=lambda r: (r.ts, r.id))
    out = [
        (
            json.loads(r.record),
            {"outcome": r.outcome, "score": r.score, "count": int(r.feedback_count)},
        )
        for r in rows
    ]
    models = collections.Counter(str(r.requested_model) for r in rows if r.requested_model)
    return out, models
