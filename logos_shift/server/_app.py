"""The FastAPI application: settings, auth, limits, access log, lifespan."""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException

from ._db import Database
from ._errors import ApiError, error_response, install
from ._keys import Principal, authenticate
from ._migrations import migrate

logger = logging.getLogger("logos_shift.server")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass(frozen=True)
class Limits:
    """Request limits.

    Attributes:
        max_ingest_bytes: largest ``/v1/ingest`` body as sent (gzip'd or not).
        max_decompressed_bytes: largest ingest body after gunzip.
        max_batch_records: most records in one ingest batch.
        max_body_bytes: largest body of every other endpoint.
    """

    max_ingest_bytes: int = 16 * 1024 * 1024
    max_decompressed_bytes: int = 64 * 1024 * 1024
    max_batch_records: int = 5000
    max_body_bytes: int = 1024 * 1024


class TooLarge(HTTPException):
    """A request body went over its limit (answered 413).

    A subclass of Starlette's ``HTTPException`` because FastAPI re-raises
    those unchanged while reading a body, where any other error becomes 400.
    """

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body is larger than {limit} bytes")


class Guard:
    """ASGI middleware: body size limits, NUL-free URLs, and a JSON access log."""

    def __init__(self, app: ASGIApp, limits: Limits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI connection scope.

        Args:
            scope: the ASGI scope.
            receive: the ASGI receive callable.
            send: the ASGI send callable.
        """
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        path: str = scope.get("path", "")
        status = {"code": 0}
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self._handle(scope, receive, send_wrapper, path, headers)
        finally:
            logger.info(
                "request",
                extra={
                    "method": scope.get("method"),
                    "path": path,
                    "status": status["code"],
                    "ms": round((time.perf_counter() - start) * 1000, 2),
                    "batch_id": headers.get("x-batch-id"),
                },
            )

    async def _handle(
        self, scope: Scope, receive: Receive, send: Send, path: str, headers: dict[str, str]
    ) -> None:
        query: bytes = scope.get("query_string", b"")
        if "\x00" in path or b"%00" in query or b"\x00" in query:
            await error_response(400, "NUL characters are not allowed in URLs")(
                scope, receive, send
            )
            return
        limit = self.limits.max_ingest_bytes if path == "/v1/ingest" else self.limits.max_body_bytes
        too_large = error_response(413, f"request body is larger than {limit} bytes")
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            if not length.isdigit():
                await error_response(400, "invalid Content-Length")(scope, receive, send)
            else:
                await too_large(scope, receive, send)
            return
        seen = {"bytes": 0, "started": False}

        async def limited_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                seen["bytes"] += len(message.get("body", b""))
                if seen["bytes"] > limit:
                    raise TooLarge(limit)
            return message

        async def tracking_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                seen["started"] = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except TooLarge:
            if not seen["started"]:
                await too_large(scope, receive, send)


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
    if creds is None:
        raise ApiError(
            401,
            "missing API key: send 'Authorization: Bearer <key>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    principal = authenticate(get_db(request), creds.credentials)
    if principal is None:
        raise ApiError(401, "invalid or revoked API key", headers={"WWW-Authenticate": "Bearer"})
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


#: Modules of this package that add endpoints when present: each has
#: ``install(app) -> service``; ``service.close()`` runs at shutdown.
EXTENSIONS: tuple[str, ...] = ("_rollout_api",)


def create_app(
    database: str | Database = "sqlite:///logos.db",
    *,
    limits: Limits | None = None,
    run_migrations: bool = True,
    extensions: bool = True,
) -> FastAPI:
    """Create the Logos server application.

    Args:
        database: a database URL (the app owns and disposes the engine) or a
            :class:`Database` (the caller owns it).
        limits: request limits (defaults: :class:`Limits`).
        run_migrations: upgrade the schema in place before serving.
        extensions: install the optional endpoint modules of :data:`EXTENSIONS`
            (fine-tuning and rollout) that are present.

    Returns:
        The FastAPI app; ``app.state.db`` is the database.

    Example:
        >>> app = create_app("sqlite:///logos.db")  # doctest: +SKIP
    """
    from . import _api

    owned = isinstance(database, str)
    db = Database(database) if isinstance(database, str) else database
    limits = limits or Limits()
    if run_migrations:
        migrate(db)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        logger.info("server started", extra={"database": db.engine.url.render_as_string()})
        yield
        for service in installed:
            close = getattr(service, "close", None)
            if callable(close):
                close()
        logger.info("server stopped")
        if owned:
            db.dispose()

    app = FastAPI(
        title="Logos Shift server",
        version="1",
        description="Self-hosted ingest, feedback, A/B config, datasets, export and stats.",
        lifespan=lifespan,
    )
    app.state.db = db
    app.state.limits = limits
    install(app)
    app.include_router(_api.build_router(limits))
    installed: list[object] = []
    if extensions:
        here = Path(__file__).parent
        for name in EXTENSIONS:
            if (here / f"{name}.py").exists():
                module = importlib.import_module(f".{name}", __package__)
                installed.append(module.install(app))
    app.add_middleware(Guard, limits=limits)
    _document_records(app)
    return app


def _document_records(app: FastAPI) -> None:
    """Publish the record schemas (ingest items) under ``components.schemas``.

    The ingest body is declared as an array of objects because each record is
    validated on its own (bad ones get a per-record error); the schemas here
    say what a valid record is.
    """
    from ._models import CallRecord, FeedbackRecord

    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        spec = build()
        schemas = spec.setdefault("components", {}).setdefault("schemas", {})
        for model in (CallRecord, FeedbackRecord):
            doc = model.model_json_schema(
                by_alias=True, ref_template="#/components/schemas/{model}"
            )
            schemas.update(doc.pop("$defs", {}))
            schemas[model.__name__] = doc
        app.openapi_schema = spec
        return spec

    app.openapi = openapi  # type: ignore[method-assign]
