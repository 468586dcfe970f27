"""FastAPI dependencies: the database, API-key auth, scopes and rate limits, request limits."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException

from .errors import ApiError
from .ratelimit import RateLimiter, retry_after
from .settings import Limits
from .store.db import Database
from .store.keys import Principal, authenticate

__all__ = [
    "DB",
    "AdminKey",
    "IngestKey",
    "Limits",
    "TooLarge",
    "get_db",
    "no_unknown_query",
    "require",
]


class TooLarge(HTTPException):
    """A request body went over its limit (answered 413).

    A subclass of Starlette's ``HTTPException`` because FastAPI re-raises
    those unchanged while reading a body, where any other error becomes 400.
    """

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body is larger than {limit} bytes")


_bearer = HTTPBearer(
    auto_error=False,
    description="A project API key: `Authorization: Bearer lsk_…` (scope ingest or admin).",
)


def get_db(request: Request) -> Database:
    """Return the application's database (a FastAPI dependency).

    Args:
        request: the current request.

    Returns:
        The database.
    """
    db: Database = request.app.state.db
    return db


def _principal(
    request: Request,
    creds: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
) -> Principal:
    limiter: RateLimiter = request.app.state.rate_limiter
    address = request.client.host if request.client else "unknown"
    wait = limiter.blocked(address)
    if wait:
        raise ApiError(
            429,
            "too many requests with a missing or wrong API key from this address; "
            f"retry in {retry_after(wait)} s",
            "rate_limited",
            headers={"Retry-After": retry_after(wait)},
        )
    if creds is None:
        limiter.failed(address)
        raise ApiError(
            401,
            "missing API key: send 'Authorization: Bearer <key>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    principal = authenticate(get_db(request), creds.credentials)
    if principal is None:
        limiter.failed(address)
        raise ApiError(401, "invalid or revoked API key", headers={"WWW-Authenticate": "Bearer"})
    wait = limiter.take(principal.key_id, principal.scope)
    if wait:
        raise ApiError(
            429,
            f"this key's rate limit is exceeded; retry in {retry_after(wait)} s",
            "rate_limited",
            headers={"Retry-After": retry_after(wait)},
        )
    return principal


def require(scope: str) -> Callable[..., Principal]:
    """Return a dependency that authenticates and checks the key's scope.

    Args:
        scope: ``"ingest"`` or ``"admin"``.

    Returns:
        The dependency function.
    """

    def dependency(principal: Annotated[Principal, Depends(_principal)]) -> Principal:
        if not principal.allows(scope):
            raise ApiError(
                403, f"this endpoint needs an {scope} key; this key's scope is {principal.scope}"
            )
        return principal

    return dependency


IngestKey = Annotated[Principal, Depends(require("ingest"))]
AdminKey = Annotated[Principal, Depends(require("admin"))]
DB = Annotated[Database, Depends(get_db)]


_allowed_query: dict[int, frozenset[str]] = {}


def no_unknown_query(request: Request) -> None:
    """Refuse query parameters the endpoint does not declare (a typo is an error).

    Args:
        request: the current request.

    Raises:
        ApiError: 400 naming the unknown parameters and the known ones.
    """
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
