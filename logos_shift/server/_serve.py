"""Running the server: in the foreground (CLI) or in a thread (tests, examples)."""

from __future__ import annotations

import signal
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import uvicorn
from fastapi import FastAPI

from . import _logging
from ._app import Limits, create_app


def _config(app: FastAPI, host: str, port: int, log_level: str) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,  # our JSON handler, not uvicorn's text format
        access_log=False,  # the Guard middleware logs each request as JSON
        log_level=log_level,
        lifespan="on",
        # On SIGTERM/SIGINT uvicorn stops accepting, lets in-flight requests
        # finish (up to this many seconds), then runs the lifespan shutdown.
        timeout_graceful_shutdown=30,
    )


def _exit_cleanly(_signum: int, _frame: object) -> None:
    raise SystemExit(0)


def run(
    database_url: str,
    host: str = "127.0.0.1",
    port: int = 8600,
    log_level: str = "info",
    limits: Limits | None = None,
) -> None:
    """Run the server in the foreground until SIGINT/SIGTERM (graceful shutdown).

    Args:
        database_url: ``sqlite:///path.db`` or ``postgresql://…``.
        host: interface to bind.
        port: TCP port.
        log_level: minimum log level.
        limits: request limits.
    """
    _logging.configure(log_level)
    app = create_app(database_url, limits=limits)
    if threading.current_thread() is threading.main_thread():
        # uvicorn re-raises the stop signal once it has shut down; answering
        # it with SystemExit(0) makes a graceful stop exit with status 0.
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, _exit_cleanly)
    uvicorn.Server(_config(app, host, port, log_level)).run()


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
        sock.listen(2048)
        bound = sock.getsockname()[1]
        server = uvicorn.Server(_config(app, host, bound, log_level))
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
