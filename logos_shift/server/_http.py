"""Connection handling that is safe without a reverse proxy: deadlines, caps, quiet errors.

uvicorn alone never closes a connection that has not finished its headers (its
keep-alive timer stops at the first byte of a request) or its body, has no
per-connection request limit, and under file descriptor exhaustion asyncio logs
a traceback for every failed ``accept()`` (thousands per second).  Here:

* :class:`GuardedH11Protocol` (uvicorn's h11 protocol, subclassed) gives every
  connection a deadline for its request line and headers (from connecting, or
  from its previous response) and one for its body; trickling bytes does not
  extend them.  An expired connection gets ``408`` (when no response started)
  and is closed.  The ``max_keepalive_requests``-th request on a connection is
  answered with ``Connection: close``.  Over ``max_connections`` open connections
  (never more than the file descriptor limit allows, less a reserve), the one
  that has waited longest for its headers is closed to make room.
* :class:`QuietServer` replaces the flood of accept() tracebacks with one
  warning line per ten seconds, with a count.
* :func:`raise_fd_limit` lifts the soft file descriptor limit to the hard one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, cast

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol, RequestResponseCycle

from .settings import Limits

__all__ = [
    "GuardedH11Protocol",
    "QuietServer",
    "accept_batch",
    "connection_cap",
    "quiet_loop",
    "raise_fd_limit",
]

logger = logging.getLogger("logos_shift.server")

#: File descriptors kept for everything but client connections (database, logs, pipes).
FD_RESERVE = 64
_TIMEOUT_BODY = b'{"error":"timeout","message":"the request did not arrive within the deadline"}'
_TIMEOUT_REPLY = (
    b"HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\nConnection: close\r\n"
    b"Content-Length: " + str(len(_TIMEOUT_BODY)).encode() + b"\r\n\r\n" + _TIMEOUT_BODY
)


def _nofile() -> int | None:
    try:
        import resource
    except ImportError:  # pragma: no cover - not on Windows
        return None
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else int(soft)


def raise_fd_limit() -> int | None:
    """Raise the soft ``RLIMIT_NOFILE`` to the hard limit (where the OS allows).

    Returns:
        The soft limit now in force, or None when unknown or unlimited.
    """
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY or soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ImportError, ValueError, OSError):
        pass
    return _nofile()


def accept_batch() -> int:
    """The listen backlog, which is also how many connections asyncio accepts in one go.

    Connections accepted in one go are closed (over the cap) only afterwards, so
    the cap leaves room for two such batches below the file descriptor limit.

    Returns:
        The backlog (64 to 2048).
    """
    nofile = _nofile()
    if nofile is None:
        return 2048
    return min(2048, max(64, (nofile - FD_RESERVE) // 4))


def connection_cap(limits: Limits) -> int:
    """The most client connections to keep open: the configured cap, within the fd limit.

    Args:
        limits: the server's limits.

    Returns:
        The cap (at least 8).
    """
    nofile = _nofile()
    cap = limits.max_connections
    if nofile is not None:
        cap = min(cap, nofile - FD_RESERVE - 2 * accept_batch())
    return max(8, cap)


def _limits_of(config: uvicorn.Config) -> tuple[Limits, int]:
    cached = getattr(config, "_logos_limits", None)
    if cached is not None:
        found: tuple[Limits, int] = cached
        return found
    app: Any = config.loaded_app
    limits = Limits()
    for _ in range(16):  # unwrap uvicorn's middlewares down to the FastAPI app
        state = getattr(app, "state", None)
        if state is not None and isinstance(getattr(state, "limits", None), Limits):
            limits = state.limits
            break
        app = getattr(app, "app", None)
        if app is None:
            break
    found = (limits, connection_cap(limits))
    config._logos_limits = found  # type: ignore[attr-defined]
    return found


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with header and body deadlines, keep-alive and connection caps."""

    def __init__(self, config: uvicorn.Config, *args: Any, **kwargs: Any) -> None:
        """Create the protocol for one connection (uvicorn calls this).

        Args:
            config: uvicorn's config.
            *args: passed to ``H11Protocol``.
            **kwargs: passed to ``H11Protocol``.
        """
        super().__init__(config, *args, **kwargs)
        self._limits, self._cap = _limits_of(config)
        self._timer: asyncio.TimerHandle | None = None
        self._phase: str | None = None
        self.phase_since = 0.0
        self._requests = 0

    # -- the asyncio.Protocol interface ------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Start the header deadline; make room when over the connection cap.

        Args:
            transport: the connection.
        """
        super().connection_made(transport)
        self._arm("headers")
        if len(self.connections) > self._cap:
            waiting = [
                c
                for c in self.connections
                if isinstance(c, GuardedH11Protocol) and c._phase == "headers"
            ]
            victim = min(waiting, key=lambda c: c.phase_since) if waiting else self
            victim._expire_now()

    def connection_lost(self, exc: Exception | None) -> None:
        """Drop the deadline, then let uvicorn clean up.

        Args:
            exc: the error that closed the connection, if any.
        """
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """Feed the data, then move the deadline to the request's new phase.

        Args:
            data: bytes received.
        """
        super().data_received(data)
        self._follow()

    def handle_events(self) -> None:
        """Handle h11 events; the last request a connection may carry gets ``close``."""
        before = self._cycle()
        super().handle_events()
        cycle = self._cycle()
        if cycle is not None and cycle is not before:
            self._requests += 1
            if self._requests >= self._limits.max_keepalive_requests:
                # uvicorn answers "Connection: close" (and closes) when the request asks.
                cast("list[tuple[bytes, bytes]]", self.scope["headers"]).append(
                    (b"connection", b"close")
                )

    def on_response_complete(self) -> None:
        """After a response, the next request's header deadline starts."""
        super().on_response_complete()
        self._follow()

    # -- deadlines -----------------------------------------------------------

    def _cycle(self) -> RequestResponseCycle | None:
        # uvicorn types it as always set; it is None until the first request.
        return cast("RequestResponseCycle | None", self.cycle)

    def _follow(self) -> None:
        transport = cast("asyncio.Transport | None", self.transport)
        if transport is None or transport.is_closing():
            self._disarm()
            return
        state = self.conn.their_state
        cycle = self._cycle()
        if state is h11.IDLE and (cycle is None or cycle.response_complete):
            self._arm("headers")
        elif state is h11.SEND_BODY:
            self._arm("body")
        elif state is not h11.IDLE:
            self._disarm()

    def _arm(self, phase: str) -> None:
        if self._phase == phase:
            return  # trickled bytes do not extend a deadline
        self._disarm()
        seconds = (
            self._limits.header_timeout_s if phase == "headers" else self._limits.body_timeout_s
        )
        self._phase = phase
        self.phase_since = time.monotonic()
        self._timer = self.loop.call_later(seconds, self._expire_now)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None
        self._phase = None

    def _expire_now(self) -> None:
        phase = self._phase
        self._disarm()
        if self.transport.is_closing():
            return
        partial = phase == "body" or bool(self.conn.trailing_data[0])
        cycle = self._cycle()
        if partial and not (cycle is not None and cycle.response_started):
            self.transport.write(_TIMEOUT_REPLY)
        if cycle is not None and not cycle.response_complete:
            # The application sees a disconnect; its later writes are dropped.
            cycle.disconnected = True
            cycle.message_event.set()
        self.transport.close()


class QuietServer(uvicorn.Server):
    """``uvicorn.Server`` whose event loop reports accept() failures as one line, rarely."""

    async def serve(self, sockets: Any = None) -> None:
        """Install the quiet exception handler, then serve.

        Args:
            sockets: pre-bound sockets (optional).
        """
        quiet_loop()
        await super().serve(sockets=sockets)


def quiet_loop() -> None:
    """Install the quiet accept-error handler on the running event loop (if there is one)."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    if not isinstance(loop.get_exception_handler(), _Quiet):
        loop.set_exception_handler(_Quiet())


class _Quiet:
    """An asyncio exception handler: out-of-resource accept errors are counted, not traced."""

    def __init__(self, every_s: float = 10.0) -> None:
        self.every_s = every_s
        self.count = 0
        self.last = 0.0

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        message = str(context.get("message", ""))
        if "out of system resource" in message:
            self.count += 1
            now = time.monotonic()
            if now - self.last >= self.every_s:
                exc = context.get("exception")
                logger.warning(
                    "cannot accept connections: %s (%d times); raise the file descriptor "
                    "limit or lower limits.max_connections",
                    exc.strerror if isinstance(exc, OSError) else message,
                    self.count,
                )
                self.last, self.count = now, 0
            return
        loop.default_exception_handler(context)
