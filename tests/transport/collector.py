"""A fake Logos ingest endpoint over a real socket, with switchable faults.

``Collector`` runs a stdlib ``ThreadingHTTPServer`` on ``127.0.0.1`` (port 0,
picked by the OS) in a daemon thread.  It accepts gzip'd JSON arrays on
``POST /v1/ingest`` and records every request: arrival time (monotonic and
wall clock), ``X-Batch-Id``, ``Authorization``, ``Content-Encoding``, the
record ids in the body and the status it answered.  Its behaviour can be
switched at any time:

* :meth:`up` answers 200 (and restarts listening on the *same* port after
  :meth:`down`);
* :meth:`down` stops listening, so clients get "connection refused";
* :meth:`fail` answers a status (500, 429 with ``Retry-After`` ...), for the
  next ``times`` requests or until switched;
* :meth:`too_large` answers 413 to batches of more than ``n`` records;
* :meth:`partial_errors` answers 200 with some per-record errors;
* :meth:`slow` waits before answering;
* :meth:`black_hole` reads the request and never answers (ingest only, or
  every request); :meth:`hang_config` never answers the config GETs only.

:meth:`stop` closes every socket (listening and accepted), so the test suite's
``ResourceWarning``-as-error setting stays quiet.
"""

from __future__ import annotations

import gzip
import json
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Request:
    """One POST the collector saw."""

    mono: float  # time.monotonic() when the body had been read
    wall: float  # time.time() at the same moment
    batch_id: str | None
    auth: str | None
    encoding: str | None
    ids: list[str]
    status: int | None  # None: black-holed, never answered
    rejected: list[str] = field(default_factory=list)  # per-record errors in a 200


@dataclass
class _Mode:
    status: int = 200
    times: int | None = None  # answer ``status`` this many times, then 200
    retry_after: str | None = None
    max_records: int | None = None
    delay: float = 0.0
    error_every: int = 0  # answer a per-record error for every n-th record
    black_hole: bool = False
    black_hole_all: bool = False  # GETs (the routing config poll) too
    release: threading.Event = field(default_factory=threading.Event)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    collector: Collector


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like a real server
    timeout = 10.0  # idle keep-alive connections are closed eventually
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.collector._track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.collector._track(self.connection, add=False)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        self.server.collector._handle(self)

    def do_GET(self) -> None:
        # Only ingest exists here (the config endpoint answers 404).
        self.server.collector.gets.append(time.monotonic())
        mode = self.server.collector._mode
        if mode.black_hole_all:
            mode.release.wait()
            self.close_connection = True
            return
        self._answer(404, b"{}")

    def _answer(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)


class Collector:
    """A fake ingest server; see the module docstring."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self.requests: list[Request] = []
        self.gets: list[float] = []  # time.monotonic() of each GET (the config polls)
        self._mode = _Mode()
        self._conns: set[socket.socket] = set()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0
        self._listen()

    # -- state ---------------------------------------------------------------

    @property
    def url(self) -> str:
        """Base URL to give LogosShift as ``server_url``."""
        return f"http://127.0.0.1:{self.port}"

    def accepted(self) -> list[Request]:
        """Requests answered with a 2xx."""
        with self._lock:
            return [r for r in self.requests if r.status is not None and 200 <= r.status < 300]

    def ids(self) -> list[str]:
        """Every record id accepted so far, duplicates included, in arrival order."""
        return [i for r in self.accepted() for i in r.ids if i not in r.rejected]

    def duplicates(self) -> dict[str, int]:
        """Ids accepted more than once, with their counts."""
        return {k: n for k, n in Counter(self.ids()).items() if n > 1}

    def wait_for(self, expected: set[str], timeout: float = 20.0) -> bool:
        """Wait until every id of ``expected`` was accepted; False on timeout."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if expected <= set(self.ids()):
                return True
            time.sleep(0.02)
        return expected <= set(self.ids())

    def wait_requests(self, n: int, timeout: float = 10.0) -> bool:
        """Wait until at least ``n`` requests arrived (whatever the answer)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self._lock:
                if len(self.requests) >= n:
                    return True
            time.sleep(0.01)
        return False

    # -- modes ---------------------------------------------------------------

    def _set(self, mode: _Mode) -> None:
        with self._lock:
            old, self._mode = self._mode, mode
        old.release.set()  # frees black-holed and slow handlers of the old mode

    def up(self) -> None:
        """Answer 200 to everything; start listening again if down."""
        self._set(_Mode())
        if self._server is None:
            self._listen()

    def fail(self, status: int, times: int | None = None, retry_after: str | None = None) -> None:
        """Answer ``status`` (with ``Retry-After`` if given), ``times`` times or until switched."""
        self._set(_Mode(status=status, times=times, retry_after=retry_after))

    def too_large(self, max_records: int) -> None:
        """Answer 413 to any batch of more than ``max_records`` records, else 200."""
        self._set(_Mode(max_records=max_records))

    def partial_errors(self, every: int) -> None:
        """Answer 200 with a per-record ``error`` result for every ``every``-th record."""
        self._set(_Mode(error_every=every))

    def slow(self, delay: float) -> None:
        """Wait ``delay`` seconds before answering 200."""
        self._set(_Mode(delay=delay))

    def black_hole(self, everything: bool = False) -> None:
        """Read each ingest request and never answer it (until the mode changes).

        Args:
            everything: swallow GETs (the routing config poll) as well.
        """
        self._set(_Mode(black_hole=True, black_hole_all=everything))

    def hang_config(self) -> None:
        """Answer ingest normally but never answer a GET (a dead config endpoint)."""
        self._set(_Mode(black_hole_all=True))

    def down(self) -> None:
        """Stop listening and drop every connection: clients get connection refused."""
        self._mode.release.set()
        server, self._server = self._server, None
        thread, self._thread = self._thread, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(5)
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        # Each handler closes its own socket on its way out; wait for them.
        with self._idle:
            self._idle.wait_for(lambda: not self._conns, timeout=5)
        # The next up() gets a fresh release event; this one stays set.
        with self._lock:
            self._mode = _Mode(release=self._mode.release)

    def stop(self) -> None:
        """Close every socket for good."""
        self.down()

    def __enter__(self) -> Collector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- internals -----------------------------------------------------------

    def _listen(self) -> None:
        server = _Server(("127.0.0.1", self.port), _Handler)
        server.collector = self
        self.port = server.server_address[1]
        thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        thread.start()
        self._server, self._thread = server, thread
        with self._lock:
            if self._mode.release.is_set():
                self._mode = _Mode()

    def _track(self, conn: socket.socket, add: bool) -> None:
        with self._idle:
            if add:
                self._conns.add(conn)
            else:
                self._conns.discard(conn)
                self._idle.notify_all()

    def _handle(self, h: _Handler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length)
        mono, wall = time.monotonic(), time.time()
        encoding = h.headers.get("Content-Encoding")
        ids: list[str] = []
        try:
            raw = gzip.decompress(body) if encoding == "gzip" else body
            records = json.loads(raw)
            ids = [str(r.get("id")) for r in records]
        except (OSError, ValueError, AttributeError, TypeError):
            h._answer(400, b'{"error": "bad body"}')
            self._record(Request(mono, wall, None, None, encoding, [], 400))
            return
        req = Request(
            mono, wall, h.headers.get("X-Batch-Id"), h.headers.get("Authorization"),
            encoding, ids, None,
        )  # fmt: skip
        with self._lock:
            mode = self._mode
            status = 200
            if mode.black_hole:
                status = 0
            elif mode.max_records is not None and len(ids) > mode.max_records:
                status = 413
            elif mode.status != 200 and (mode.times is None or mode.times > 0):
                status = mode.status
                if mode.times is not None:
                    mode.times -= 1
            if status:
                req.status = status
            self.requests.append(req)
        if status == 0:
            mode.release.wait()
            h.close_connection = True
            return
        if mode.delay:
            mode.release.wait(mode.delay)
        headers = {}
        if status != 200 and mode.retry_after is not None:
            headers["Retry-After"] = mode.retry_after
        body = b"{}"
        if status == 200 and mode.error_every:
            results = []
            for k, i in enumerate(ids):
                bad = k % mode.error_every == 0
                results.append({"id": i, "status": "error" if bad else "ok"})
                if bad:
                    req.rejected.append(i)
            body = json.dumps({"results": results}).encode()
        h._answer(status, body, headers)

    def _record(self, req: Request) -> None:
        with self._lock:
            self.requests.append(req)


def capture(ls: Any, n: int, dataset: str = "t") -> list[str]:
    """Make ``n`` records through ``@ls()`` and return their ids in order."""

    @ls(dataset=dataset)
    def work(i: int) -> dict[str, Any]:
        return {"i": i}

    return [str(work(i)["logos_shift_id"]) for i in range(n)]


def assert_accounted(stats: dict[str, Any], pending: int | None = 0) -> None:
    """Assert ``captured == sent + spooled + dropped + pending`` (and ``pending`` if given)."""
    total = stats["sent"] + stats["spooled"] + stats["dropped"] + stats["pending"]
    assert stats["captured"] == total, stats
    if pending is not None:
        assert stats["pending"] == pending, stats
