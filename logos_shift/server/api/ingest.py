"""HTTP endpoints of ingest: record batches (``/v1/ingest``) and direct feedback."""

from __future__ import annotations

import logging
import time
import zlib
from typing import Any

import pydantic_core
import sqlalchemy as sa
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from logos_shift._capture import record as _ids  # record ids are part of the record schema
from logos_shift._capture import record as _records
from logos_shift.server.deps import DB, IngestKey, TooLarge
from logos_shift.server.errors import ApiError
from logos_shift.server.events import Events, datasets_of
from logos_shift.server.settings import Limits
from logos_shift.server.store.db import Database
from logos_shift.server.store.ingest import ingest
from logos_shift.server.store.schema import feedback

from .models import FeedbackIn, FeedbackOut, IngestOut

__all__ = ["add_routes"]

logger = logging.getLogger("logos_shift.server")


def _gunzip(data: bytes, limit: int, max_members: int) -> bytes:
    """Decode a (multi-member) gzip body in linear time.

    zlib copies whatever follows a member's end into ``unused_data``; handing it
    the whole rest of the body once per member made many small members cost
    quadratic time (a body of empty members took minutes of CPU).  Input is fed
    in slices that start small and grow while a member goes on, so the copy per
    member is bounded by its own size, and the number of members is capped.
    """
    out = bytearray()
    view = memoryview(data)
    pos = 0
    members = 0
    try:
        while pos < len(data):
            members += 1
            if members > max_members:
                raise ApiError(413, f"body has more than {max_members} gzip members")
            d = zlib.decompressobj(16 + zlib.MAX_WBITS)
            step = 1024
            while not d.eof:
                if pos >= len(data):
                    raise ApiError(400, "gzip body is truncated")
                chunk = view[pos : pos + step]
                pos += len(chunk)
                out += d.decompress(chunk, limit + 1 - len(out))
                if len(out) > limit:
                    raise ApiError(413, f"decompressed body is larger than {limit} bytes")
                step = min(step * 2, 1 << 20)
            pos -= len(d.unused_data)
    except zlib.error:
        raise ApiError(400, "body is not valid gzip") from None
    return bytes(out)


def _decode_batch(raw: bytes, encoding: str, limits: Limits) -> list[dict[str, Any]]:
    if encoding == "gzip":
        raw = _gunzip(raw, limits.max_decompressed_bytes, limits.max_gzip_members)
    elif encoding not in ("", "identity"):
        raise ApiError(415, f"unsupported Content-Encoding {encoding!r}; use gzip or none")
    try:
        # jiter (pydantic-core) parses ~3x faster than json.loads; NaN and
        # Infinity are refused because they are not JSON.
        data = pydantic_core.from_json(raw, allow_inf_nan=False)
    except ValueError as exc:
        raise ApiError(400, f"body is not valid JSON: {exc}") from None
    if not isinstance(data, list):
        raise ApiError(400, "body must be a JSON array of records")
    if len(data) > limits.max_batch_records:
        raise ApiError(
            413, f"batch has {len(data)} records; the limit is {limits.max_batch_records}"
        )
    bad = [i for i, item in enumerate(data) if not isinstance(item, dict)]
    if bad:
        raise ApiError(400, f"every element must be a record object; element {bad[0]} is not")
    return data


def _ingest_sync(
    db: Database, project_id: int, raw: bytes, encoding: str, limits: Limits
) -> tuple[dict[str, Any], frozenset[str]]:
    records = _decode_batch(raw, encoding, limits)
    result = ingest(db, project_id, records, limits.max_record_bytes)
    stored = (
        rec for rec, res in zip(records, result.results, strict=True) if res["status"] == "ok"
    )
    return result.as_json(), datasets_of(stored)


def _published(request: Request, project_id: int, datasets: frozenset[str]) -> None:
    """Tell the rollout loop (``app.state.events``) which datasets received records."""
    events: Events | None = getattr(request.app.state, "events", None)
    if events is not None:
        events.records_arrived(project_id, datasets)


def add_routes(router: APIRouter, limits: Limits) -> None:
    """Add ``POST /v1/ingest`` and ``POST /v1/feedback`` to ``router``.

    Args:
        router: the API router.
        limits: request limits (used in the OpenAPI description and checks).
    """

    @router.post(
        "/v1/ingest",
        tags=["ingest"],
        response_model=IngestOut,
        responses={413: {"description": "body or batch too large; split it"}},
        openapi_extra={
            "requestBody": {
                "required": True,
                "description": (
                    "A JSON array of call and feedback records (schema 1; see the "
                    "`CallRecord` and `FeedbackRecord` schemas), usually sent "
                    "with `Content-Encoding: gzip`. Each record is validated on its own: "
                    "invalid ones get `status: error` in the result, the rest are stored. "
                    f"At most {limits.max_batch_records} records and "
                    f"{limits.max_ingest_bytes} bytes per request (413 above: split the batch)."
                ),
                "content": {
                    "application/json": {
                        # The batch limit is server configuration, answered
                        # with 413 (the client splits), so it is not a schema
                        # constraint.
                        "schema": {"type": "array", "items": {"type": "object"}}
                    }
                },
            }
        },
    )
    async def ingest_endpoint(request: Request, principal: IngestKey, db: DB) -> JSONResponse:
        """Store a batch of records; idempotent on record id; one result per record."""
        chunks = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limits.max_ingest_bytes:
                raise TooLarge(limits.max_ingest_bytes)
            chunks.append(chunk)
        encoding = request.headers.get("content-encoding", "").strip().lower()
        body, datasets = await run_in_threadpool(
            _ingest_sync, db, principal.project_id, b"".join(chunks), encoding, limits
        )
        _published(request, principal.project_id, datasets)
        logger.info(
            "ingest",
            extra={
                "project": principal.project,
                "batch_id": request.headers.get("x-batch-id"),
                "accepted": body["accepted"],
                "duplicates": body["duplicates"],
                "errors": body["errors"],
            },
        )
        return JSONResponse(body)

    @router.post(
        "/v1/feedback",
        tags=["ingest"],
        response_model=FeedbackOut,
        responses={
            202: {
                "model": FeedbackOut,
                "description": "Kept, but no call with this id has arrived yet (`pending`).",
            }
        },
    )
    def feedback_endpoint(
        body: FeedbackIn, principal: IngestKey, db: DB, request: Request, response: Response
    ) -> FeedbackOut:
        """Give feedback by logos id or provider response id; idempotent on `id`.

        200 when it joined its call; 202 with `pending: true` when the call has not
        arrived: it is kept and joined whenever the call comes (a call still in a
        client's spool may come days later), and listed by `GET /v1/feedback/pending`
        meanwhile, where a mistyped id shows up.
        """
        fid = body.id or _ids.new_id()
        record = {
            "schema": 1,
            "type": "feedback",
            "id": fid,
            "ts": body.ts or _records.format_ts(time.time()),
            "target": body.target,
            "outcome": body.outcome,
            "score": body.score,
            "comment": body.comment,
            "metadata": body.metadata,
        }
        res = ingest(db, principal.project_id, [record], limits.max_record_bytes).results[0]
        if res["status"] == "error":
            raise ApiError(422, res["error"])
        if res["status"] == "ok":
            _published(request, principal.project_id, datasets_of([record]))
        with db.read() as conn:
            call_id = conn.execute(
                sa.select(feedback.c.call_id).where(
                    feedback.c.id == fid, feedback.c.project_id == principal.project_id
                )
            ).scalar()
        if call_id is not None:
            return FeedbackOut(id=fid, status=res["status"], call_id=call_id)
        response.status_code = 202
        return FeedbackOut(
            id=fid,
            status=res["status"],
            call_id=None,
            pending=True,
            message=f"no call with id or response id {body.target!r} has arrived yet; the "
            "feedback is kept and joined when it does (logos-shift feedback pending lists "
            "feedback still waiting: check the id if it stays there)",
        )
