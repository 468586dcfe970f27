"""Read-side queries: datasets, call listings, export streams, and the one calls scan.

Listings use keyset pagination on ``(ts, id)``: the cursor is the last row's
key, so a page costs the same however deep it is and rows inserted meanwhile
are neither skipped nor repeated.  Exports walk the same keyset in pages, so
no database cursor stays open while the client reads slowly.

Pages and export chunks are bounded by bytes as well as rows: the sizes of the
next rows are read first (a cheap query), then only the records that fit are
fetched, and they are streamed out as stored (never parsed into Python objects
for a listing), so memory stays near the byte limit however large records are.
"""

from __future__ import annotations

import base64
import binascii
import collections
import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

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
        if not isinstance(ts, (int, float)) or isinstance(ts, bool) or not isinstance(call_id, str):
            raise ValueError("invalid cursor")
        value = float(ts)  # a 400-digit integer overflows here
    except (ValueError, TypeError, binascii.Error, OverflowError, RecursionError):
        raise ValueError("invalid cursor") from None
    if not math.isfinite(value) or len(call_id) > 256:
        raise ValueError("invalid cursor")
    return value, call_id


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
    conn: Connection | None = None,
) -> Iterator[Any]:
    """Stream every call matching ``f`` (the server's one calls scan).

    Rows come in no particular order, in one read transaction, fetched in
    batches so memory stays flat however many calls match.

    Args:
        db: the database.
        project_id: the project.
        f: which calls.
        columns: the columns to read (default: every column of ``calls``).
        conn: read inside this transaction (default: a read transaction of its own).

    Yields:
        Result rows (attribute access by column name or label).
    """
    query = sa.select(*(columns if columns is not None else calls.c)).where(*_where(project_id, f))
    if conn is not None:
        yield from conn.execute(query, execution_options={"yield_per": _PAGE})
        return
    with db.read() as own:
        yield from own.execute(query, execution_options={"yield_per": _PAGE})


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


def _size(db: Database) -> sa.ColumnElement[Any]:
    if db.dialect == "sqlite":
        return sa.func.length(sa.cast(calls.c.record, sa.LargeBinary))
    return sa.func.octet_length(calls.c.record)


def _sizes(
    db: Database,
    project_id: int,
    f: CallFilter,
    after: tuple[float, str] | None,
    limit: int,
    newest_first: bool = False,
) -> list[tuple[float, str, int]]:
    """``(ts, id, bytes of the record)`` of the next ``limit`` calls after ``after``."""
    cond = _where(project_id, f)
    if after is not None:
        ts, cid = after
        if newest_first:
            cond.append(sa.or_(calls.c.ts < ts, sa.and_(calls.c.ts == ts, calls.c.id < cid)))
        else:
            cond.append(sa.or_(calls.c.ts > ts, sa.and_(calls.c.ts == ts, calls.c.id > cid)))
    order = (calls.c.ts.desc(), calls.c.id.desc()) if newest_first else (calls.c.ts, calls.c.id)
    query = sa.select(calls.c.ts, calls.c.id, _size(db)).where(*cond).order_by(*order).limit(limit)
    with db.read() as conn:
        return [(float(t), str(i), int(n or 0)) for t, i, n in conn.execute(query)]


def _fitting(sized: list[tuple[float, str, int]], max_bytes: int) -> int:
    """How many of ``sized`` fit in ``max_bytes`` (at least one, so a page always moves on)."""
    used = 0
    for n, (_, _, size) in enumerate(sized):
        used += size
        if used > max_bytes and n > 0:
            return n
    return len(sized)


def _rows(db: Database, project_id: int, ids: list[str]) -> list[Any]:
    """The calls ``ids`` (record and feedback summary), in the order of ``ids``."""
    query = sa.select(
        calls.c.id, calls.c.ts, calls.c.record, calls.c.outcome, calls.c.score,
        calls.c.feedback_count,
    ).where(calls.c.project_id == project_id, calls.c.id.in_(ids))  # fmt: skip
    with db.read() as conn:
        rows = list(conn.execute(query).all())
    # The keyset order is the database's (its collation), which the ids came in.
    order = {cid: n for n, cid in enumerate(ids)}
    return sorted(rows, key=lambda r: order[str(r.id)])


def _json_text(text: str) -> str:
    """A stored record as strict JSON (rows stored before NaN and Infinity were refused)."""
    if "NaN" not in text and "Infinity" not in text:
        return text

    def finite(obj: Any) -> Any:
        if isinstance(obj, float) and not math.isfinite(obj):
            return None
        if isinstance(obj, dict):
            return {k: finite(v) for k, v in obj.items()}
        if isinstance(obj, list):
            return [finite(v) for v in obj]
        return obj

    return json.dumps(finite(json.loads(text)), separators=(",", ":"), allow_nan=False)


def _line(obj: Any) -> bytes:
    try:
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: JSON's \u escape spells it
        return json.dumps(obj, separators=(",", ":")).encode("ascii")


def list_calls(
    db: Database,
    project_id: int,
    f: CallFilter,
    cursor: str | None,
    limit: int,
    max_bytes: int = 8 * 1024 * 1024,
    newest_first: bool = False,
) -> Iterator[bytes]:
    """Return one page of a dataset's calls, oldest first (or newest first), as streamed JSON.

    The page ends after ``limit`` calls or once their records reach ``max_bytes``
    (at least one call per page); ``next_cursor`` continues after its last call.

    Args:
        db: the database.
        project_id: the project.
        f: filters.
        cursor: ``next_cursor`` of the previous page, or None for the first.
        limit: most calls in the page.
        max_bytes: most record bytes in the page.
        newest_first: walk from the newest call back (the cursor continues
            in the order it was made in).

    Returns:
        Chunks of ``{"calls": [{"record", "feedback": {"outcome", "score", "count"}}],
        "next_cursor": str | None}``.

    Raises:
        ValueError: for an invalid cursor (raised here, before anything is sent).
    """
    after = decode_cursor(cursor) if cursor else None
    sized = _sizes(db, project_id, f, after, limit + 1, newest_first)
    more = len(sized) > limit
    sized = sized[:limit]
    keep = _fitting(sized, max_bytes)
    more = more or keep < len(sized)
    sized = sized[:keep]
    rows = _rows(db, project_id, [i for _, i, _ in sized]) if sized else []
    nxt = encode_cursor(sized[-1][0], sized[-1][1]) if more and sized else None
    return _page_json(rows, nxt)


def _page_json(rows: list[Any], nxt: str | None) -> Iterator[bytes]:
    yield b'{"calls":['
    for n, r in enumerate(rows):
        fb = _line({"outcome": r.outcome, "score": r.score, "count": int(r.feedback_count)})
        lead = b"," if n else b""
        record = _json_text(r.record).encode("utf-8")
        yield lead + b'{"record":' + record + b',"feedback":' + fb + b"}"
    yield b'],"next_cursor":' + _line(nxt) + b"}"


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
            "record": json.loads(_json_text(row.record)),
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


def export_stream(
    db: Database, project_id: int, f: CallFilter, fmt: str, max_bytes: int = 8 * 1024 * 1024
) -> Iterator[bytes]:
    """Yield the export as JSONL bytes, a bounded number of record bytes at a time.

    Args:
        db: the database.
        project_id: the project.
        f: filters.
        fmt: ``"raw"`` (records as ingested) or ``"openai-chat"``.
        max_bytes: most record bytes read and yielded per chunk (one record at least).

    Yields:
        Chunks of JSONL.
    """
    after: tuple[float, str] | None = None
    while True:
        sized = _sizes(db, project_id, f, after, _PAGE)
        if not sized:
            return
        while sized:
            keep = _fitting(sized, max_bytes)
            group, sized = sized[:keep], sized[keep:]
            lines = []
            for r in _rows(db, project_id, [i for _, i, _ in group]):
                if fmt == "raw":
                    lines.append(_json_text(r.record).encode("utf-8"))
                    continue
                example = to_openai_chat(json.loads(_json_text(r.record)))
                if example is not None:
                    lines.append(_line(example))
            if lines:
                yield b"\n".join(lines) + b"\n"
            after = (group[-1][0], group[-1][1])


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


def usage_totals(db: Database, project_id: int) -> list[dict[str, Any]]:
    """Sum calls and tokens per dataset, model, route and variant (one grouped query).

    Args:
        db: the database.
        project_id: the project.

    Returns:
        ``[{"dataset", "model", "route", "variant", "calls", "input_tokens",
        "output_tokens"}]``, by dataset then model; the row count is the number of
        distinct groups, not of calls.
    """
    model = sa.func.coalesce(calls.c.served_model, calls.c.requested_model)
    query = (
        sa.select(
            calls.c.dataset,
            model.label("model"),
            calls.c.route,
            calls.c.variant,
            sa.func.count().label("n"),
            sa.func.coalesce(sa.func.sum(calls.c.input_tokens), 0).label("tin"),
            sa.func.coalesce(sa.func.sum(calls.c.output_tokens), 0).label("tout"),
        )
        .where(calls.c.project_id == project_id)
        .group_by(calls.c.dataset, model, calls.c.route, calls.c.variant)
        .order_by(calls.c.dataset, model)
    )
    with db.read() as conn:
        rows = conn.execute(query).all()
    return [
        {
            "dataset": r.dataset,
            "model": r.model,
            "route": r.route,
            "variant": r.variant,
            "calls": int(r.n),
            "input_tokens": int(r.tin),
            "output_tokens": int(r.tout),
        }
        for r in rows
    ]


def search_calls(
    db: Database,
    project_id: int,
    f: CallFilter,
    text: str,
    limit: int,
    max_bytes: int,
    window: int = 5000,
) -> list[dict[str, Any]]:
    """Find the newest calls whose stored record contains ``text`` (case-insensitive).

    Only the newest ``window`` calls matching ``f`` are searched, so the cost is
    bounded however many calls the project has.

    Args:
        db: the database.
        project_id: the project.
        f: filters.
        text: the text to find (in inputs, outputs, ids, metadata).
        limit: most calls returned.
        max_bytes: most record bytes returned (at least one call).
        window: how many of the newest matching calls are searched.

    Returns:
        ``[{"record", "feedback": {"outcome", "score", "count"}}]``, newest first.
    """
    needle = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    recent = (
        sa.select(calls.c.id)
        .where(*_where(project_id, f))
        .order_by(calls.c.ts.desc(), calls.c.id.desc())
        .limit(window)
        .scalar_subquery()
    )
    query = (
        sa.select(calls.c.ts, calls.c.id, _size(db))
        .where(
            calls.c.project_id == project_id,
            calls.c.id.in_(recent),
            calls.c.record.ilike(f"%{needle}%", escape="\\"),
        )
        .order_by(calls.c.ts.desc(), calls.c.id.desc())
        .limit(limit)
    )
    with db.read() as conn:
        sized = [(float(t), str(i), int(n or 0)) for t, i, n in conn.execute(query)]
    sized = sized[: _fitting(sized, max_bytes)]
    rows = _rows(db, project_id, [i for _, i, _ in sized]) if sized else []
    return [
        {
            "record": json.loads(_json_text(r.record)),
            "feedback": {"outcome": r.outcome, "score": r.score, "count": int(r.feedback_count)},
        }
        for r in rows
    ]


def dataset_names(db: Database, project_id: int) -> list[str]:
    """Return the names of the project's datasets, sorted (read from an index, no counting).

    Args:
        db: the database.
        project_id: the project.

    Returns:
        The names.
    """
    query = (
        sa.select(calls.c.dataset)
        .where(calls.c.project_id == project_id)
        .distinct()
        .order_by(calls.c.dataset)
    )
    with db.read() as conn:
        return [str(name) for name in conn.execute(query).scalars()]
