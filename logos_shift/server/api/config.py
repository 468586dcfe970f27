"""HTTP endpoints of the routing config: ``/v1/config`` and the routes behind it."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Request, Response
from fastapi.responses import JSONResponse

from logos_shift.errors import ConfigError
from logos_shift.server.deps import DB, AdminKey, IngestKey
from logos_shift.server.errors import ApiError
from logos_shift.server.store import routes as _routes_store

from .models import RouteName

__all__ = ["add_routes"]


def add_routes(router: APIRouter) -> None:
    """Add the config and route endpoints to ``router``.

    Args:
        router: the API router.
    """

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
