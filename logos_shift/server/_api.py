"""HTTP endpoints: ingest, feedback, config and routes (reads are in ``_api_data``)."""

from __future__ import annotations

import logging
import time
import zlib
from typing import Annotated, Any

import pydantic_core
import sqlalchemy as sa
from fastapi import APIRouter, Body, Depends, Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool

from logos_shift._capture import record as _ids  # record ids are part of the record schema
from logos_shift._capture import record as _records
from logos_shift.errors import ConfigError

from . import _api_data, _routes_store
from ._api_data import RouteName
from ._app import DB, AdminKey, IngestKey, Limits, TooLarge
from ._db import Database
from ._errors import ApiError
from ._ingest import ingest
from ._models import ErrorOut, FeedbackIn, FeedbackOut, IngestOut
from ._schema import feedback

logger = logging.getLogger("logos_shift.server")


_allowed_query: dict[int, frozenset[str]] = {}


def _no_unknown_query(request: Request) -> None:
    """Refuse query parameters the endpoint does not declare (a typo is an error)."""
    if not request.query_params:
        return
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    allowed = _allowed_query.get(id(route))
    if allowed is None:
        names: set[str] = set()
        stack = [route.dependant]
        while stack:
            dep = stack.pop()
            names.update(p.alias for p in dep.query_params)
            stack.extend(dep.dependencies)
        allowed = frozenset(names)
        _allowed_query[id(route)] = allowed
    unknown = sorted(set(request.query_params) - allowed)
    if unknown:
        known = ", ".join(sorted(allowed)) or "none"
        raise ApiError(400, f"unknown query parameter(s) {unknown}; this endpoint takes: {known}")


def _gunzip(data: bytes, limit: int) -> bytes:
    out = bytearray()
    rest = data
    try:
        while rest:
            d = zlib.decompressobj(16 + zlib.MAX_WBITS)
            out += d.decompress(rest, limit + 1 - len(out))
            if len(out) > limit or d.unconsumed_tail:
                raise ApiError(413, f"decompressed body is larger than {limit} bytes")
            if not d.eof:
                raise ApiError(400, "gzip body is truncated")
            rest = d.unused_data
    except zlib.error as exc:
        raise ApiError(400, f"body is not valid gzip: {exc}") from None
    return bytes(out)


def _decode_batch(raw: bytes, encoding: str, limits: Limits) -> list[dict[str, Any]]:
    if encoding == "gzip":
        raw = _gunzip(raw, limits.max_decompressed_bytes)
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
) -> dict[str, Any]:
    records = _decode_batch(raw, encoding, limits)
    return ingest(db, project_id, records).as_json()


def build_router(limits: Limits) -> APIRouter:
    """Create the API router.

    Args:
        limits: request limits (used in the OpenAPI description and checks).

    Returns:
        The router with every ``/v1`` endpoint and ``/healthz``.
    """
    errors: dict[int | str, dict[str, Any]] = {
        status: {"model": ErrorOut, "description": text}
        for status, text in [
            (400, "Malformed request (bad JSON or gzip, bad parameter)"),
            (401, "Missing, unknown or revoked API key"),
            (403, "The key's scope does not allow this endpoint"),
            (404, "No such route, price or path in this project"),
            (409, "An id that belongs to another project"),
            (413, "Body or batch too large"),
            (415, "Unsupported Content-Encoding"),
            (422, "Invalid body or parameter"),
        ]
    }
    router = APIRouter(responses=errors, dependencies=[Depends(_no_unknown_query)])

    @router.get("/healthz", tags=["ops"])
    def healthz(db: DB) -> dict[str, Any]:
        """Liveness and database check (no key needed)."""
        with db.read() as conn:
            conn.execute(sa.text("SELECT 1"))
        return {"status": "ok"}

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
        body = await run_in_threadpool(
            _ingest_sync, db, principal.project_id, b"".join(chunks), encoding, limits
        )
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

    @router.post("/v1/feedback", tags=["ingest"], response_model=FeedbackOut)
    def feedback_endpoint(body: FeedbackIn, principal: IngestKey, db: DB) -> FeedbackOut:
        """Give feedback by logos id or provider response id; idempotent on `id`."""
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
        res = ingest(db, principal.project_id, [record]).results[0]
        if res["status"] == "error":
            raise ApiError(409 if "another project" in res["error"] else 422, res["error"])
        with db.read() as conn:
            call_id = conn.execute(
                sa.select(feedback.c.call_id).where(
                    feedback.c.id == fid, feedback.c.project_id == principal.project_id
                )
            ).scalar()
        return FeedbackOut(id=fid, status=res["status"], call_id=call_id)

    @router.get(
        "/v1/config",
        tags=["config"],
        responses={
            200: {"description": "The routing config (the router's schema)."},
            304: {"description": "Unchanged since the ETag sent in If-None-Match."},
        },
    )
    def config_endpoint(request: Request, principal: IngestKey, db: DB) -> Response:
        """The project's A/B routing config; send If-None-Match to get 304 when unchanged."""
        config, etag = _routes_store.get_config(db, principal.project_id)
        headers = {"ETag": etag, "Cache-Control": "no-cache"}
        sent = request.headers.get("if-none-match", "")
        tags = {t.strip().removeprefix("W/") for t in sent.split(",")}
        if etag in tags or "*" in tags:
            return Response(status_code=304, headers=headers)
        return JSONResponse(config, headers=headers)

    @router.get("/v1/routes", tags=["routes"])
    def list_routes(principal: AdminKey, db: DB) -> dict[str, Any]:
        """Every route of the project by name."""
        return {"routes": _routes_store.list_routes(db, principal.project_id)}

    @router.get("/v1/routes/{route}", tags=["routes"])
    def get_route(route: RouteName, principal: AdminKey, db: DB) -> dict[str, Any]:
        """One route, in the router's schema."""
        found = _routes_store.get_route(db, principal.project_id, route)
        if found is None:
            raise ApiError(404, f"no route named {route!r} in this project")
        return found

    @router.put("/v1/routes/{route}", tags=["routes"])
    def put_route(
        route: RouteName,
        body: Annotated[dict[str, Any], Body(description="The route, in the router's schema.")],
        principal: AdminKey,
        db: DB,
        response: Response,
    ) -> dict[str, Any]:
        """Create or replace a route (validated like the client does); bumps the config version."""
        try:
            stored, version, created = _routes_store.put_route(
                db, principal.project_id, route, body
            )
        except ConfigError as exc:
            raise ApiError(422, str(exc), "invalid_route", details=exc.errors) from None
        response.status_code = 201 if created else 200
        return {"name": route, "route": stored, "version": version, "created": created}

    @router.delete("/v1/routes/{route}", tags=["routes"], status_code=204)
    def delete_route(route: RouteName, principal: AdminKey, db: DB) -> Response:
        """Delete a route; bumps the config version."""
        if _routes_store.delete_route(db, principal.project_id, route) is None:
            raise ApiError(404, f"no route named {route!r} in this project")
        return Response(status_code=204)

    _api_data.add_routes(router)
    return router
