"""`logos-shift keys|migrate|server` against a real database and a real process."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa

from logos_shift.cli import main
from logos_shift.server import Database
from logos_shift.server.store.keys import authenticate, create_key
from logos_shift.server.store.migrations import LATEST, migrate


def test_keys_create_list_revoke(db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """`keys create` prints a working key once; `list` never shows it; `revoke` disables it."""
    assert (
        main(["keys", "create", "--project", "acme", "--scope", "ingest", "--database-url", db_url])
        == 0
    )
    out, err = capsys.readouterr()
    key = out.strip()
    assert key.startswith("lsk_")
    assert "shown only once" in err
    db = Database(db_url)
    try:
        principal = authenticate(db, key)
        assert principal is not None
        assert (principal.project, principal.scope) == ("acme", "ingest")
        assert main(["keys", "list", "--database-url", db_url]) == 0
        listing = capsys.readouterr().out
        assert listing.splitlines()[0].split() == ["ID", "PROJECT", "SCOPE", "KEY", "CREATED",
                                                   "STATE"]  # fmt: skip
        assert "acme" in listing
        assert "ingest" in listing
        assert key not in listing
        assert main(["keys", "list", "--json", "--database-url", db_url]) == 0
        (listed,) = json.loads(capsys.readouterr().out)
        assert (listed["project"], listed["scope"], listed["revoked"]) == ("acme", "ingest", False)
        assert key.startswith(listed["prefix"])
        key_id = listed["id"]
        assert main(["keys", "revoke", str(key_id), "--database-url", db_url]) == 0
        assert authenticate(db, key) is None
        assert main(["keys", "revoke", str(key_id), "--database-url", db_url]) == 1
    finally:
        db.dispose()
    bad = ["keys", "create", "--project", "", "--scope", "admin", "--database-url", db_url]
    assert main(bad) == 2


def test_migrate_command(db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """`migrate` reports the upgrade and is a no-op the second time."""
    assert main(["migrate", "--database-url", db_url]) == 0
    assert f"0 -> {LATEST}" in capsys.readouterr().out
    assert main(["migrate", "--database-url", db_url]) == 0
    assert "applied: none" in capsys.readouterr().out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.mark.parametrize("workers", [1, 2])
def test_server_command_serves_logs_json_and_stops_gracefully(tmp_path: Path, workers: int) -> None:
    """`logos-shift server` serves /healthz and OpenAPI, logs JSON, and exits 0 on SIGTERM."""
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    port = _free_port()
    log = (tmp_path / "server.log").open("w+")
    argv = [sys.executable, "-m", "logos_shift", "server", "--port", str(port)]
    argv += ["--database-url", url, "--workers", str(workers)]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=log)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                r = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                break
            except requests.ConnectionError:
                assert proc.poll() is None, "server exited early"
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.1)
        assert r.json() == {"status": "ok"}
        spec = requests.get(f"http://127.0.0.1:{port}/openapi.json", timeout=5).json()
        assert "/v1/ingest" in spec["paths"]
        assert any("rollout" in path for path in spec["paths"])
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.seek(0)
        lines = log.read().splitlines()
        log.close()
    records = [json.loads(line) for line in lines]
    assert any(
        r["msg"] == "request" and r["path"] == "/healthz" and r["status"] == 200 for r in records
    )
    assert any(r["msg"] == "server stopped" for r in records)


def test_sigterm_lets_an_in_flight_upload_finish(tmp_path: Path) -> None:
    """A batch still being received when SIGTERM arrives is stored and answered 200."""
    url = f"sqlite:///{tmp_path / 'graceful.db'}"
    db = Database(url)
    migrate(db)
    key = create_key(db, "acme", "ingest")[0]
    port = _free_port()
    argv = [sys.executable, "-m", "logos_shift", "server", "--port", str(port)]
    argv += ["--database-url", url, "--log-level", "warning"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.1)
        record = {"schema": 1, "type": "call", "id": "in-flight-1",
                  "ts": "2026-11-23T21:00:00.000Z", "dataset": "graceful"}  # fmt: skip
        body = json.dumps([record]).encode()
        head = (
            f"POST /v1/ingest HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(head + body[:10])
            time.sleep(0.5)  # let the server start reading the request
            proc.send_signal(signal.SIGTERM)
            time.sleep(0.5)  # the server is now shutting down, the request still open
            sock.sendall(body[10:])
            reply = b""
            while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                reply += chunk
        assert reply.startswith(b"HTTP/1.1 200"), reply[:200]
        assert b'"accepted":1' in reply
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    with db.read() as conn:
        stored = conn.execute(sa.text("SELECT id FROM calls")).scalars().all()
    db.dispose()
    assert stored == ["in-flight-1"]
