"""The server's HTTP API: ingest, config, data and rollout endpoints."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends

from logos_shift.server.deps import DB, Limits, no_unknown_query

from . import config, data, ingest
from .models import ErrorOut

__all__ = ["build_router"]


def build_router(limits: Limits) -> APIRouter:
    """Create the API router.

    Args:
        limits: request limits (used in the OpenAPI description and checks).

    Returns:
        The router with every ``/v1`` endpoint but the rollout ones, and ``/healthz``.
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
    router = APIRouter(responses=errors, dependencies=[Depends(no_unknown_query)])

    @router.get("/healthz", tags=["ops"])
    def healthz(db: DB) -> dict[str, Any]:
        """Liveness and database check (no key needed)."""
        with db.read() as conn:
            conn.execute(sa.text("SELECT 1"))
        return {"status": "ok"}

    ingest.add_routes(router, limits)
    config.add_routes(router)
    data.add_routes(router)
    return router
