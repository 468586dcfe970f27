"""The fake provider's HTTP plumbing: a threaded HTTP/1.1 server that tidies up after itself.

Clients (httpx2 under both SDKs) keep connections alive, so the server speaks
HTTP/1.1: JSON answers carry ``Content-Length`` and event streams use
``Transfer-Encoding: chunked``, which lets a stream end without closing the
connection and lets "disconnect mid-stream" look exactly like a dropped connection
(an unterminated chunked body).  Every accepted socket is tracked so that stopping
the server shuts them down and joins their threads: no socket is left for the
garbage collector (and ``ResourceWarning``) to find.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ._common import Event, Reply, new_id

# Errors that only mean "the client went away"; not worth reporting.
_GONE = (ConnectionError, TimeoutError, socket.timeout)


def encode_event(event: Event) -> bytes:
    """Encode one server-sent event.

    Args:
        event: ``(event name or None, data)``; non-string data is JSON-encoded.

    Returns:
        The ``event:`` / ``data:`` lines and the blank line that ends the event.
    """
    name, data = event
    text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    head = f"event: {name}\n" if name else ""
    return f"{head}data: {text}\n\n".encode()


def _chunk(data: bytes) -> bytes:
    """Frame ``data`` as one HTTP/1.1 chunk."""
    return b"%x\r\n%s\r\n" % (len(data), data)


class Handler(BaseHTTPRequestHandler):
    """Reads one request at a time and hands it to the server's dispatch function."""

    protocol_version = "HTTP/1.1"
    # Headers and body are separate small writes; with Nagle on, delayed ACKs would add
    # ~40 ms to every answer.
    disable_nagle_algorithm = True
    server: FakeServer

    def do_GET(self) -> None:
        """Dispatch a GET request."""
        self.server.dispatch(self)

    do_POST = do_GET
    do_DELETE = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: tests do not want an access log on stderr."""

    def read_body(self) -> bytes:
        """Read the request body (``Content-Length`` or chunked).

        Returns:
            The body bytes (empty when there is none).
        """
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            parts: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("content-length") or 0)
        return self.rfile.read(length) if length else b""

    def wait(self, seconds: float) -> bool:
        """Sleep ``seconds`` unless the server stops first.

        Args:
            seconds: How long to wait.

        Returns:
            True when the server is stopping (the caller should give up).
        """
        return self.server.stopping.wait(seconds)

    def _head(self, status: int, headers: dict[str, str]) -> None:
        self.send_response(status)
        rid = new_id("req_")
        merged = {"x-request-id": rid, "request-id": rid}
        merged.update({k.lower(): v for k, v in headers.items()})
        for key, value in merged.items():
            self.send_header(key, value)
        self.end_headers()

    def send_json(self, status: int, payload: Any, headers: dict[str, str]) -> None:
        """Send a complete response with ``Content-Length``.

        Args:
            status: HTTP status.
            payload: Bytes (sent as is), a string, or a JSON-able value.
            headers: Extra headers (override the defaults).
        """
        if isinstance(payload, bytes):
            data, ctype = payload, "application/octet-stream"
        else:
            data = (payload if isinstance(payload, str) else json.dumps(payload)).encode()
            ctype = "application/json"
        self._head(status, {"content-type": ctype, "content-length": str(len(data)), **headers})
        self.wfile.write(data)

    def send_sse(
        self, events: list[Event], reply: Reply, error: Event, headers: dict[str, str]
    ) -> None:
        """Stream events as a chunked ``text/event-stream``, honouring the reply's faults.

        Args:
            events: The events to send, in order.
            reply: Carries ``disconnect_after_chunks``, ``error_after_chunks`` and
                ``chunk_delay``.
            error: The provider's mid-stream error event.
            headers: Extra headers.
        """
        base = {"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache"}
        self._head(200, {**base, "transfer-encoding": "chunked", **headers})
        # Events go out in as few writes as possible: without a delay the client cannot
        # tell the difference, and one syscall per event would dominate benchmarks.
        out = bytearray()
        for index, event in enumerate(events):
            if reply.disconnect_after_chunks is not None and index >= reply.disconnect_after_chunks:
                self.wfile.write(out)
                self.drop()
                return
            if reply.error_after_chunks is not None and index >= reply.error_after_chunks:
                out += _chunk(encode_event(error))
                break
            if index and reply.chunk_delay:
                self.wfile.write(out)
                out.clear()
                if self.wait(reply.chunk_delay):
                    self.drop()
                    return
            out += _chunk(encode_event(event))
        self.wfile.write(out + b"0\r\n\r\n")

    def drop(self) -> None:
        """Close the connection abruptly (no response, or an unfinished one)."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class FakeServer(ThreadingHTTPServer):
    """``ThreadingHTTPServer`` on ``127.0.0.1:0`` that tracks its connections.

    Args:
        dispatch: Called with the :class:`Handler` for every request.
        on_error: Called with unexpected exceptions raised by ``dispatch``.
    """

    daemon_threads = True
    # We join our own threads with a deadline in close_all(); the stdlib join has none.
    block_on_close = False

    def __init__(
        self, dispatch: Callable[[Handler], None], on_error: Callable[[BaseException], None]
    ) -> None:
        """Bind the listening socket (see the class docstring for the arguments)."""
        self.dispatch = dispatch
        self.on_error = on_error
        self.stopping = threading.Event()
        self._conn_lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._workers: set[threading.Thread] = set()
        super().__init__(("127.0.0.1", 0), Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        """Serve one connection in a tracked daemon thread."""
        worker = threading.Thread(target=self._work, args=(request, client_address), daemon=True)
        with self._conn_lock:
            self._conns.add(request)
            self._workers.add(worker)
        worker.start()

    def _work(self, request: Any, client_address: Any) -> None:
        try:
            self.process_request_thread(request, client_address)
        finally:
            with self._conn_lock:
                self._workers.discard(threading.current_thread())

    def shutdown_request(self, request: Any) -> None:
        """Close a finished connection and stop tracking it."""
        with self._conn_lock:
            self._conns.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Report unexpected handler errors; ignore clients that hung up."""
        exc = sys.exc_info()[1]
        if exc is not None and not isinstance(exc, _GONE):
            self.on_error(exc)

    def close_all(self, timeout: float = 5.0) -> None:
        """Close the listening socket, then every open connection, and join the workers.

        Args:
            timeout: Seconds to wait for the connection threads in total.
        """
        self.stopping.set()
        self.server_close()
        with self._conn_lock:
            conns, workers = list(self._conns), list(self._workers)
        for conn in conns:
            try:
                # Wakes a worker blocked reading the next keep-alive request; the
                # worker then closes the socket itself.
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        deadline = time.monotonic() + timeout
        for worker in workers:
            worker.join(max(0.0, deadline - time.monotonic()))
