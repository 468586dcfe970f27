"""Running the server: in the foreground (CLI) or in a thread (tests, examples).

Both use the guarded connection handling of :mod:`._http` (header and body
deadlines, keep-alive and connection caps, quiet accept errors).
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import uvicorn
from fastapi import FastAPI
from uvicorn.supervisors import Multiprocess

from . import _logging
from ._http import GuardedH11Protocol, QuietServer, accept_batch, quiet_loop, raise_fd_limit
from .app import create_app
from .settings import Limits, ServerSettings
from .store.db import Database, normalise_url, sqlite_path
from .store.migrations import migrate


def _exit_cleanly(_signum: int, _frame: object) -> None:
    raise SystemExit(0)


def _config(
    app: FastAPI | str, host: str, port: int, log_level: str, limits: Limits, **extra: object
) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=GuardedH11Protocol,
        timeout_keep_alive=limits.keepalive_timeout_s,  # type: ignore[arg-type]
        backlog=accept_batch(),
        log_config=None,  # our JSON handler, not uvicorn's text format
        access_log=False,  # the Guard middleware logs each request as JSON
        log_level=log_level,
        lifespan="on",
        # On SIGTERM/SIGINT uvicorn stops accepting, lets in-flight requests
        # finish (up to this many seconds), then runs the lifespan shutdown.
        timeout_graceful_shutdown=30,
        **extra,  # type: ignore[arg-type]
    )


_ENV_URL = "LOGOS_SHIFT_SERVER_DATABASE_URL"
_ENV_LOG = "LOGOS_SHIFT_SERVER_LOG_LEVEL"


class PortInUse(OSError):
    """The server's address is taken (another server, or another program, listens there)."""


def bind(host: str, port: int) -> socket.socket:
    """Bind and listen on ``host:port`` before anything else starts.

    Binding first means a port in use is the first and only thing reported,
    instead of an error after "server started" in the logs.

    Args:
        host: interface to bind.
        port: TCP port (0 picks a free one).

    Returns:
        The listening socket.

    Raises:
        PortInUse: the address is already in use.
        OSError: another binding problem (e.g. an unknown host, a port below 1024).
    """
    raise_fd_limit()  # before listening: the backlog follows the file descriptor limit
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(accept_batch())
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortInUse(
                exc.errno,
                f"port {port} on {host} is already in use (another logos-shift server? "
                f"stop it, or choose another port with --port)",
            ) from None
        raise OSError(exc.errno, f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.set_inheritable(True)
    return sock


def app_from_env() -> FastAPI:
    """Build the app in a uvicorn worker process (``--workers`` > 1).

    Returns:
        The app for the database named by the parent (schema already migrated),
        with the settings of ``$LOGOS_SHIFT_SERVER_CONFIG`` and the environment.
    """
    _logging.configure(os.environ.get(_ENV_LOG, "info"))
    quiet_loop()  # the worker's uvicorn loads the app inside its running event loop
    return create_app(os.environ[_ENV_URL], run_migrations=False)


def run(
    database_url: str,
    host: str = "127.0.0.1",
    port: int = 8600,
    log_level: str = "info",
    limits: Limits | None = None,
    workers: int = 1,
    sock: socket.socket | None = None,
    config_path: str | None = None,
) -> None:
    """Run the server in the foreground until SIGINT/SIGTERM (graceful shutdown).

    Args:
        database_url: ``sqlite:///path.db`` or ``postgresql://…``.
        host: interface to bind.
        port: TCP port.
        log_level: minimum log level.
        limits: request limits (single-process mode only; default: the config's).
        workers: uvicorn worker processes; more than 1 uses every core for
            JSON parsing and validation (SQLite still has one writer at a time).
        sock: a socket from :func:`bind` to serve on (default: bind ``host:port``
            here, before the database is opened).
        config_path: the server's JSON config (default: ``$LOGOS_SHIFT_SERVER_CONFIG``).

    Raises:
        PortInUse: ``host:port`` is taken.
        SettingsError: the config is invalid (nothing is served).
    """
    if sock is None:
        sock = bind(host, port)
    if workers > 1:
        # uvicorn's supervisor binds the address itself: the check above is
        # released just before (a program taking the port in between is reported
        # by uvicorn).
        sock.close()
    _logging.configure(log_level)
    path = sqlite_path(normalise_url(database_url))
    if path is not None and not path.exists():
        logging.getLogger("logos_shift.server").info(
            "creating a new database", extra={"path": str(path)}
        )
    if config_path is not None:
        os.environ["LOGOS_SHIFT_SERVER_CONFIG"] = config_path  # the workers read it too
    settings = ServerSettings.load(config_path)
    limits = limits or settings.limits
    if threading.current_thread() is threading.main_thread():
        # uvicorn re-raises the stop signal once it has shut down; answering
        # it with SystemExit(0) makes a graceful stop exit with status 0.
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, _exit_cleanly)
    if workers > 1:
        db = Database(database_url)
        try:
            migrate(db)
        finally:
            db.dispose()
        os.environ[_ENV_URL] = database_url
        os.environ[_ENV_LOG] = log_level
        config = _config(
            "logos_shift.server._serve:app_from_env", host, port, log_level, settings.limits,
            factory=True, workers=workers,
        )  # fmt: skip
        sock = config.bind_socket()
        Multiprocess(config, sockets=[sock]).run()
        return
    try:
        app = create_app(database_url, limits=limits, settings=settings)
        QuietServer(_config(app, host, port, log_level, limits)).run(sockets=[sock])
    finally:
        sock.close()


@dataclass
class RunningServer:
    """A server running in a background thread."""

    app: FastAPI
    host: str
    port: int
    server: uvicorn.Server
    thread: threading.Thread

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:53211``."""
        return f"http://{self.host}:{self.port}"


@contextmanager
def serve_in_thread(
    app: FastAPI, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning"
) -> Iterator[RunningServer]:
    """Serve ``app`` with uvicorn in a thread; stop it gracefully on exit.

    Args:
        app: the application (e.g. from :func:`create_app`).
        host: interface to bind.
        port: TCP port; 0 picks a free one (see ``.port``).
        log_level: uvicorn's log level.

    Yields:
        The running server (``.url``, ``.port``).

    Raises:
        RuntimeError: when the server does not start within 30 s.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(accept_batch())
        bound = sock.getsockname()[1]
        limits: Limits = getattr(app.state, "limits", None) or Limits()
        server = QuietServer(_config(app, host, bound, log_level, limits))
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="logos-server", daemon=True
        )
        thread.start()
        deadline = time.monotonic() + 30
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                server.should_exit = True
                thread.join(5)
                raise RuntimeError("the Logos server did not start")
            time.sleep(0.01)
        try:
            yield RunningServer(app, host, bound, server, thread)
        finally:
            server.should_exit = True
            thread.join(60)
    finally:
        sock.close()
