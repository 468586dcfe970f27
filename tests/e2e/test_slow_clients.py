"""Slow and idle clients against `logos-shift server` as a process: header and body deadlines,
keep-alive limits, the concurrency limit, and no traceback flood when file descriptors run out.

Everything runs on 127.0.0.1 with bounded numbers of connections (at most a few hundred).
"""

from __future__ import annotations

import json
import os
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

pytestmark = pytest.mark.slow


class Process:
    """A running `logos-shift server` with a config file; stderr goes to a file."""

    sockets: list[socket.socket]

    def __init__(self, tmp: Path, limits: dict[str, Any], nofile: int | None = None) -> None:
        self.sockets = []
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        config = tmp / "server.json"
        config.write_text(json.dumps({"limits": limits}))
        self.log_path = tmp / "server.log"
        self._log = self.log_path.open("wb")
        argv = [sys.executable, "-m", "logos_shift", "server", "--port", str(self.port)]
        argv += ["--database-url", f"sqlite:///{tmp / 'slow.db'}", "--config", str(config)]

        def limit_fds() -> None:
            if nofile is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        self.proc = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=self._log, preexec_fn=limit_fds
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(self.url("/healthz"), timeout=2)
                return
            except requests.ConnectionError:
                assert self.proc.poll() is None, self.log_path.read_text()[-2000:]
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.1)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        self.sockets.append(sock)  # closed by stop()
        return sock

    def stop(self) -> None:
        for sock in self.sockets:
            sock.close()
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Any]:
    """Factory: ``start(limits, nofile=None)`` runs a server process; stopped afterwards."""
    made: list[Process] = []

    def make(limits: dict[str, Any], nofile: int | None = None) -> Process:
        proc = Process(tmp_path, limits, nofile)
        made.append(proc)
        return proc

    yield make
    for proc in made:
        proc.stop()


def _closed(sock: socket.socket, within: float) -> bool:
    """Whether the server closes ``sock`` (EOF or reset) within ``within`` seconds."""
    sock.settimeout(0.2)
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            data = sock.recv(65536)
        except TimeoutError:
            continue
        except OSError:
            return True
        if data == b"":
            return True
    return False


def _healthz_seconds(proc: Process) -> float:
    t = time.monotonic()
    r = requests.get(proc.url("/healthz"), timeout=5)
    assert r.status_code == 200
    return time.monotonic() - t


def test_slow_headers_are_cut_off(start: Any) -> None:
    """150 connections that never finish their headers are closed after header_timeout_s."""
    proc = start({"header_timeout_s": 1})
    socks = [proc.connect() for _ in range(150)]
    for s in socks:
        s.sendall(b"POST /v1/ingest HTTP/1.1\r\nHost: x\r\n")
    assert all(_closed(s, 5) for s in socks)
    assert _healthz_seconds(proc) < 1.0


def test_a_trickled_header_does_not_extend_the_deadline(start: Any) -> None:
    """Sending one header byte at a time does not keep a connection open past the deadline."""
    proc = start({"header_timeout_s": 1})
    s = proc.connect()
    t = time.monotonic()
    s.sendall(b"GET /healthz HTTP/1.1\r\n")
    closed = False
    while time.monotonic() - t < 5:
        try:
            s.sendall(b"X")
        except OSError:
            closed = True
            break
        if _closed(s, 0.3):
            closed = True
            break
    assert closed
    assert time.monotonic() - t < 4


def test_a_short_body_is_cut_off(start: Any) -> None:
    """A request whose body never completes is closed after body_timeout_s."""
    proc = start({"header_timeout_s": 5, "body_timeout_s": 1})
    s = proc.connect()
    s.sendall(b"PUT /v1/prices/x HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: 1000\r\n\r\n{\"input")  # fmt: skip
    assert _closed(s, 5)


def test_keepalive_connections_are_closed_after_max_requests(start: Any) -> None:
    """The last request a connection may carry is answered with Connection: close."""
    proc = start({"max_keepalive_requests": 3})
    s = proc.connect()
    replies = []
    for _ in range(3):
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while b'"ok"}' not in data:
            data += s.recv(4096)
        replies.append(data)
    assert b"connection: close" not in replies[0].lower()
    assert b"connection: close" in replies[2].lower()
    assert _closed(s, 5)


def test_requests_over_the_concurrency_limit_get_503_but_healthz_answers(start: Any) -> None:
    """With max_concurrent_requests in flight, one more gets 503 + Retry-After; /healthz works."""
    proc = start({"max_concurrent_requests": 4, "body_timeout_s": 30})
    held = []
    for _ in range(4):
        s = proc.connect()
        s.sendall(b"PUT /v1/prices/x HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 100\r\n\r\n{")  # fmt: skip
        held.append(s)
    time.sleep(0.5)
    r = requests.get(proc.url("/v1/datasets"), timeout=5)
    assert r.status_code == 503
    assert int(r.headers["Retry-After"]) >= 1
    assert _healthz_seconds(proc) < 1.0


def test_healthz_answers_under_hundreds_of_slow_connections_with_few_fds(start: Any) -> None:
    """400 half-sent requests against a server limited to 256 file descriptors: /healthz
    answers within 1 s every time, and the log stays small (no traceback per failed accept)."""
    proc = start({"header_timeout_s": 30}, nofile=256)
    for _ in range(400):
        try:
            proc.connect().sendall(b"POST /v1/ingest HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n")
        except OSError:
            continue  # the server closed it already to make room
    time.sleep(1.0)
    for _ in range(5):
        assert _healthz_seconds(proc) < 1.0
        time.sleep(0.5)
    time.sleep(0.5)
    assert os.path.getsize(proc.log_path) < 200_000
    assert b"Traceback" not in proc.log_path.read_bytes()
