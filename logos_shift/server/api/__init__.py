"""The server's HTTP API: ingest, config, data and rollout endpoints."""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from logos_shift.server.deps import DB, no_unknown_query
from logos_shift.server.settings import Limits

from . import config, data, ingest
from .models import SHARED_ERRORS, HealthOut
from .strict_json import StrictJSONRoute

__all__ = ["build_router"]

logger = logging.getLogger("logos_shift.server")


def build_router(limits: Limits) -> APIRouter:
    """Create the API router.

    Args:
        limits: request limits (used in the OpenAPI description and checks).

    Returns:
        The router with every ``/v1`` endpoint but the rollout ones, and ``/healthz``.
    """
    router = APIRouter(
        responses=SHARED_ERRORS,
        dependencies=[Depends(no_unknown_query)],
        route_class=StrictJSONRoute,
    )
    ops = APIRouter(tags=["ops"])

    @ops.get(
        "/healthz",
        responses={503: {"model": HealthOut, "description": "The database does not answer"}},
    )
    def healthz(db: DB) -> Any:
        """Liveness and database check (no key needed, never rate limited)."""
        try:
            with db.read() as conn:
                conn.execute(sa.text("SELECT 1"))
        except sa.exc.SQLAlchemyError:
            logger.warning("health check: the database does not answer")
            return JSONResponse({"status": "unavailable"}, status_code=503)
        return HealthOut(status="ok")

    ingest.add_routes(router, limits)
    config.add_routes(router)
    data.add_routes(router)
    ops.include_router(router)
    return ops
