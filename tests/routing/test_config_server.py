"""Server config source over a real local HTTP server: ETag/304, outages, bad configs, disk copy."""

from __future__ import annotations

import json
import logging
import random
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from logos_shift.routing.router import Router


def doc(version: int, kill_switch: bool = False) -> dict[str, Any]:
    return {
        "version": version,
        "routes": {
            "support": {
                "match": {"dataset": "support", "model": "gpt-4o"},
                "control": {"name": "base", "model": "gpt-4o"},
                "variants": [{"name": "ft-1", "model": f"ft:v{version}"}],
                "rollout": {"variant_pct": 1.0},
                "kill_switch": kill_switch,
            }
        },
    }


class ConfigServer:
    """A real HTTP server serving /v1/config with ETags; can fail, serve junk or go down."""

    def __init__(self) -> None:
        self.body: bytes = b""
        self.etag = '"0"'
        self.status = 200
        self.requests: list[dict[str, str]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append(dict(self.headers.items()))
                if self.path != "/v1/config":
                    self.send_error(404)
                    return
                if server.status != 200:
                    self.send_error(server.status)
                    return
                if self.headers.get("If-None-Match") == server.etag:
                    self.send_response(304)
                    self.send_header("ETag", server.etag)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("ETag", server.etag)
                self.send_header("Content-Length", str(len(server.body)))
                self.end_headers()
                self.wfile.write(server.body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()
        self.running = True

    def serve(self, config: Any, etag: str) -> None:
        self.body = config if isinstance(config, bytes) else json.dumps(config).encode()
        self.etag = etag

    def stop(self) -> None:
        if self.running:
            self.running = False
            self.httpd.shutdown()
            self.httpd.server_close()
            self.thread.join(5)


class Clock:
    """A hand-driven monotonic clock."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def server() -> Iterator[ConfigServer]:
    """A running config server, stopped after the test."""
    s = ConfigServer()
    s.serve(doc(1), '"v1"')
    yield s
    s.stop()


@pytest.fixture
def routers() -> Iterator[list[Router]]:
    """Routers created by a test, closed afterwards (no socket left open)."""
    made: list[Router] = []
    yield made
    for r in made:
        r.close()


def make(
    routers: list[Router], url: str, state_dir: Path, clock: Clock, refresh: float = 60.0
) -> Router:
    r = Router(
        server_url=url, api_key="sk-test", state_dir=state_dir, clock=clock,
        refresh_seconds=refresh, timeout=5.0, rng=random.Random(1),
    )  # fmt: skip
    routers.append(r)
    return r


def served_model(r: Router) -> str | None:
    d = r.decide("support", "gpt-4o", {"user_id": "u1"})
    return None if d is None else d.model


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_fetch_with_bearer_key_applies_and_persists(
    server: ConfigServer, routers: list[Router], tmp_path: Path
) -> None:
    """The first poll fetches with a Bearer key, applies the config and saves it to disk."""
    r = make(routers, server.url, tmp_path, Clock())
    assert r.config is None
    assert r.next_poll_due() == 0.0
    r.poll()
    assert served_model(r) == "ft:v1"
    assert server.requests[0]["Authorization"] == "Bearer sk-test"
    assert "If-None-Match" not in server.requests[0]
    [cache] = list(tmp_path.glob("router-config-*.json"))
    saved = json.loads(cache.read_text())
    assert saved["etag"] == '"v1"'
    assert saved["config"]["version"] == 1
    assert "sk-test" not in cache.read_text()
    assert not list(tmp_path.glob("*.tmp"))


def test_not_modified_path(server: ConfigServer, routers: list[Router], tmp_path: Path) -> None:
    """Later polls send If-None-Match; a 304 keeps the config without re-applying it."""
    clock = Clock()
    r = make(routers, server.url, tmp_path, clock)
    r.poll()
    clock.t += 100
    r.poll()
    assert server.requests[1]["If-None-Match"] == '"v1"'
    stats = r.stats()
    assert stats["source"]["not_modified"] == 1
    assert stats["config"]["swaps"] == 1
    assert served_model(r) == "ft:v1"


def test_poll_is_scheduled_every_refresh_with_jitter(
    server: ConfigServer, routers: list[Router], tmp_path: Path
) -> None:
    """The next poll is due refresh_seconds (±10 %) after a good one; earlier polls do nothing."""
    clock = Clock()
    r = make(routers, server.url, tmp_path, clock, refresh=60.0)
    due = r.poll()
    assert 1054.0 <= due <= 1066.0
    clock.t += 50
    r.poll()
    assert len(server.requests) == 1


def test_new_config_and_kill_switch_apply_within_one_refresh(
    server: ConfigServer, routers: list[Router], tmp_path: Path
) -> None:
    """A changed config (here the kill switch) is in force after the next poll."""
    clock = Clock()
    r = make(routers, server.url, tmp_path, clock)
    r.poll()
    server.serve(doc(2, kill_switch=True), '"v2"')
    clock.t += 70
    r.poll()
    assert served_model(r) == "gpt-4o"
    d = r.decide("support", "gpt-4o", {"user_id": "u1"})
    assert d is not None
    assert d.reason == "kill_switch"
    assert r.config is not None
    assert r.config.version == 2


def test_server_down_at_start_uses_last_good_from_disk(
    server: ConfigServer, routers: list[Router], tmp_path: Path
) -> None:
    """A new process with the server down serves the config saved by an earlier run."""
    first = make(routers, server.url, tmp_path, Clock())
    first.poll()
    url = server.url
    server.stop()
    clock = Clock()
    r = make(routers, url, tmp_path, clock)
    # In force before any poll: nothing on the call path waits for the server.
    assert served_model(r) == "ft:v1"
    r.poll()
    assert served_model(r) == "ft:v1"
    stats = r.stats()
    assert stats["source"]["consecutive_failures"] == 1
    assert "ConnectionError" in stats["source"]["last_error"]
    assert stats["config"]["origin"].startswith("cache:")


def test_server_down_at_start_without_cache_means_no_routing(
    routers: list[Router], tmp_path: Path
) -> None:
    """With no server and no disk copy, every call keeps its model and polls back off from 1 s."""
    clock = Clock()
    r = make(routers, closed_port_url(), tmp_path, clock)
    due = r.poll()
    assert served_model(r) is None
    assert 1000.9 <= due <= 1001.1


def test_server_going_down_later_keeps_config_with_backoff(
    server: ConfigServer, routers: list[Router], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """When the server goes away the config stays; retries back off 1, 2, 4 … s up to refresh."""
    clock = Clock()
    r = make(routers, server.url, tmp_path, clock, refresh=10.0)
    r.poll()
    server.stop()
    delays = []
    with caplog.at_level(logging.WARNING, logger="logos_shift"):
        for _ in range(6):
            clock.t = r.next_poll_due()
            delays.append(r.poll() - clock.t)
            assert served_model(r) == "ft:v1"
    for delay, base in zip(delays, (1, 2, 4, 8, 10, 10), strict=True):
        assert base * 0.9 <= delay <= base * 1.1
    # One warning per outage, not one per failed poll.
    assert caplog.text.count("cannot fetch routing config") == 1


def test_server_recovering_resumes_updates(
    server: ConfigServer, routers: list[Router], tmp_path: Path
) -> None:
    """After HTTP 503s the next good poll applies the new config and resets the backoff."""
    clock = Clock()
    r = make(routers, server.url, tmp_path, clock)
    r.poll()
    server.status = 503
    clock.t = r.next_poll_due()
    r.poll()
    assert r.stats()["source"]["last_error"] == "HTTP 503"
    server.status = 200
    server.serve(doc(3), '"v3"')
    clock.t = r.next_poll_due()
    due = r.poll()
    assert served_model(r) == "ft:v3"
    assert r.stats()["source"]["consecutive_failures"] == 0
    assert due - clock.t > 50


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"<html>oops</html>", "not valid JSON"),
        (json.dumps({"version": 2, "routes": {"support": {"match": {"dataset": "s"}}}}).encode(),
         "routes.support.control: required"),
    ],
)  # fmt: skip
def test_malformed_config_is_rejected_and_previous_kept(
    server: ConfigServer,
    routers: list[Router],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    body: bytes,
    error: str,
) -> None:
    """A malformed config from the server is rejected; the previous stays in memory and on disk."""
    clock = Clock()
    r = make(routers, server.url, tmp_path, clock)
    r.poll()
    server.serve(body, '"bad"')
    clock.t += 100
    with caplog.at_level(logging.WARNING, logger="logos_shift"):
        r.poll()
    assert served_model(r) == "ft:v1"
    assert error in caplog.text
    assert r.stats()["source"]["rejected"] == 1
    [cache] = list(tmp_path.glob("router-config-*.json"))
    assert json.loads(cache.read_text())["etag"] == '"v1"'
    # The old ETag is still sent, so a fixed config is fetched as soon as it is served.
    clock.t += 100
    r.poll()
    assert server.requests[-1]["If-None-Match"] == '"v1"'


def test_restart_with_cache_revalidates_with_its_etag(
    server: ConfigServer, routers: list[Router], tmp_path: Path
) -> None:
    """A restarted client sends the saved ETag, so an unchanged config costs only a 304."""
    make(routers, server.url, tmp_path, Clock()).poll()
    r = make(routers, server.url, tmp_path, Clock())
    r.poll()
    assert server.requests[-1]["If-None-Match"] == '"v1"'
    assert r.stats()["source"]["not_modified"] == 1
    assert served_model(r) == "ft:v1"


def test_corrupt_cache_is_ignored(
    server: ConfigServer, routers: list[Router], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A damaged disk copy is ignored with a warning; the server's config is used once fetched."""
    make(routers, server.url, tmp_path, Clock()).poll()
    [cache] = list(tmp_path.glob("router-config-*.json"))
    cache.write_text('{"format": 1, "config": {"routes": 7}}')
    with caplog.at_level(logging.WARNING, logger="logos_shift"):
        r = make(routers, server.url, tmp_path, Clock())
    assert r.config is None
    assert "ignoring invalid config cache" in caplog.text
    r.poll()
    assert served_model(r) == "ft:v1"


def test_cache_is_per_server_and_key(
    server: ConfigServer, routers: list[Router], tmp_path: Path
) -> None:
    """A client with another API key does not pick up a different key's saved config."""
    make(routers, server.url, tmp_path, Clock()).poll()
    other = Router(server_url=server.url, api_key="sk-other", state_dir=tmp_path)
    routers.append(other)
    assert other.config is None


def test_state_dir_defaults_to_env(
    server: ConfigServer,
    routers: list[Router],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without state_dir, the disk copy goes to $LOGOS_SHIFT_STATE_DIR."""
    monkeypatch.setenv("LOGOS_SHIFT_STATE_DIR", str(tmp_path / "state"))
    r = Router(server_url=server.url)
    routers.append(r)
    r.refresh_now()
    assert list((tmp_path / "state").glob("router-config-*.json"))
    assert "Authorization" not in server.requests[0]


def test_local_file_takes_precedence_over_server(
    server: ConfigServer, routers: list[Router], tmp_path: Path
) -> None:
    """With both routes= and server_url, the local file is the only source."""
    path = tmp_path / "routes.json"
    path.write_text(json.dumps(doc(7)))
    r = Router(routes=path, server_url=server.url, state_dir=tmp_path)
    routers.append(r)
    r.refresh_now()
    assert served_model(r) == "ft:v7"
    assert server.requests == []
