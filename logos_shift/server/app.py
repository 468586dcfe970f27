"""The FastAPI application: its assembly, lifespan, body and concurrency limits, access log."""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from .deps import TooLarge
from .errors import error_response, install
from .events import Events
from .finetune.backend import BackendFactory
from .ratelimit import RateLimiter
from .rollout.types import RolloutSettings
from .settings import Limits, ServerSettings
from .store.db import Database
from .store.migrations import migrate

__all__ = ["Guard", "create_app", "loop_options"]

logger = logging.getLogger("logos_shift.server")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class Guard:
    """ASGI middleware: body size and concurrency limits, NUL-free URLs, a JSON access log.

    Requests beyond ``max_concurrent_requests`` in flight are answered 503 with
    ``Retry-After`` at once (``/healthz`` is exempt, so a load balancer still sees
    the server alive); one event loop runs this, so a plain counter is enough.
    """

    def __init__(self, app: ASGIApp, limits: Limits) -> None:
        self.app = app
        self.limits = limits
        self.in_flight = 0

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

        busy = path != "/healthz" and self.in_flight >= self.limits.max_concurrent_requests
        try:
            if busy:
                await error_response(
                    503,
                    "the server is handling too many requests; retry shortly",
                    headers={"Retry-After": "1"},
                )(scope, receive, send_wrapper)
                return
            self.in_flight += 1
            try:
                await self._handle(scope, receive, send_wrapper, path, headers)
            finally:
                self.in_flight -= 1
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


#: The rollout loop's timings from the environment, read in this one place.
_LOOP_ENV = {
    "interval_s": ("LOGOS_SHIFT_ROLLOUT_INTERVAL_S", 5.0),
    "debounce_s": ("LOGOS_SHIFT_ROLLOUT_DEBOUNCE_S", 1.0),
    "lease_s": ("LOGOS_SHIFT_ROLLOUT_LEASE_S", 10.0),
}


def loop_options(environ: Mapping[str, str] | None = None) -> dict[str, float]:
    """Return the rollout loop's ``interval_s``, ``debounce_s`` and ``lease_s``.

    Each comes from ``$LOGOS_SHIFT_ROLLOUT_INTERVAL_S`` / ``_DEBOUNCE_S`` /
    ``_LEASE_S`` when set (seconds), else its default (5, 1 and 10).

    Args:
        environ: the environment (default: ``os.environ``).

    Returns:
        The keyword arguments of :meth:`RolloutService.start`.

    Raises:
        ValueError: a value is not a positive number.
    """
    env = os.environ if environ is None else environ
    out = {}
    for key, (var, default) in _LOOP_ENV.items():
        raw = env.get(var)
        try:
            value = default if raw in (None, "") else float(str(raw))
        except ValueError:
            value = float("nan")
        if not 0 < value < float("inf"):
            raise ValueError(f"${var} must be a positive number of seconds, not {raw!r}")
        out[key] = value
    return out


def create_app(
    database: str | Database = "sqlite:///logos.db",
    *,
    limits: Limits | None = None,
    settings: ServerSettings | None = None,
    rollout: RolloutSettings | None = None,
    backend_factory: BackendFactory | None = None,
    run_migrations: bool = True,
    extensions: bool = True,
) -> FastAPI:
    """Create the Logos server application.

    Args:
        database: a database URL (the app owns and disposes the engine) or a
            :class:`Database` (the caller owns it).
        limits: request limits (default: ``settings.limits``).
        settings: what the operator configures: backends, outbound policy, quotas,
            limits, rate limits (default: :meth:`ServerSettings.load`, i.e. the file
            named by ``$LOGOS_SHIFT_SERVER_CONFIG`` and the environment).
        rollout: how fine-tunes and rollouts run: loop interval and debounce, leader
            lease, job timeout and polls, webhook retries (default:
            ``RolloutSettings()`` with the loop's timings from
            ``$LOGOS_SHIFT_ROLLOUT_INTERVAL_S`` / ``_DEBOUNCE_S`` / ``_LEASE_S``).
        backend_factory: builds the fine-tuning backend from ``(base_url, api_key)``
            of the backend a launch chose (your own :class:`FineTuneBackend`);
            None: the OpenAI-compatible client.
        run_migrations: upgrade the schema in place before serving.
        extensions: install the fine-tuning and rollout endpoints and service.

    Returns:
        The FastAPI app; ``app.state.db`` is the database, ``app.state.settings``
        the settings, ``app.state.rollout`` the rollout service (with extensions).

    Example:
        >>> from logos_shift.server import RolloutSettings
        >>> app = create_app(
        ...     "sqlite:///logos.db",
        ...     rollout=RolloutSettings(interval_s=2.0),
        ...     backend_factory=lambda url, key: MyBackend(url, key),
        ... )  # doctest: +SKIP
    """
    from . import api
    from .api import rollout as rollout_api
    from .api import ui
    from .rollout.service import RolloutService

    owned = isinstance(database, str)
    settings = settings if settings is not None else ServerSettings.load()
    if limits is not None:
        settings = dataclasses.replace(settings, limits=limits)
    limits = settings.limits
    # The loop's timings: the ``rollout`` argument, else the environment, else the
    # defaults (a bad environment value is an error now, not once serving).
    if rollout is None:
        env = loop_options()
        rollout = RolloutSettings(
            interval_s=env["interval_s"], debounce_s=env["debounce_s"], lease_s=env["lease_s"]
        )
    rs = rollout
    db = Database(database) if isinstance(database, str) else database
    if run_migrations:
        migrate(db)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        logger.info("server started", extra={"database": db.engine.url.render_as_string()})
        rollout = getattr(app.state, "rollout", None)
        if rollout is not None:
            # Evaluations and transitions run on the loop's thread, never a request's.
            rollout.start(
                events=app.state.events,
                interval_s=rs.interval_s,
                debounce_s=rs.debounce_s,
                lease_s=rs.lease_s,
            )
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
    app.state.settings = settings
    app.state.rate_limiter = RateLimiter(settings.rate_limits)
    app.state.events = Events()
    install(app)
    app.include_router(api.build_router(limits))
    installed: list[object] = []
    if extensions:
        service = RolloutService(
            db,
            backend_factory=backend_factory,
            job_timeout_s=rs.job_timeout_s,
            poll_s=rs.poll_s,
            webhook_retries=rs.webhook_retries,
            webhook_backoff_s=rs.webhook_backoff_s,
            settings=settings,
        )
        app.state.rollout_settings = rs
        installed.append(rollout_api.install(app, service))
    ui.install(app)
    app.add_middleware(Guard, limits=limits)
    _document_records(app)
    return app


def _document_records(app: FastAPI) -> None:
    """Publish the record schemas (ingest items) under ``components.schemas``.

    The ingest body is declared as an array of objects because each record is
    validated on its own (bad ones get a per-record error); the schemas here
    say what a valid record is.
    """
    from .store.records import CallRecord, FeedbackRecord

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
