"""init(wait_for_config=): the first calls of a fresh process are routed; no server, no wait."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

import logos_shift

pytest.importorskip("fastapi")

from logos_shift.server import Database, create_app, create_key, serve_in_thread

ROUTE: dict[str, Any] = {
    "match": {"dataset": "search"},
    "control": {"name": "base", "model": "v1"},
    "variants": [{"name": "v2", "callable": "v2"}],
    "rollout": {"variant_pct": 1.0},
}


@pytest.fixture
def logos(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A Logos server on SQLite with route 'search' sending everyone to v2: (url, ingest key)."""
    db = Database(f"sqlite:///{tmp_path / 'logos.db'}")
    app = create_app(db)
    admin = create_key(db, "acme", "admin")[0]
    ingest = create_key(db, "acme", "ingest")[0]
    with serve_in_thread(app) as running:
        r = requests.put(
            f"{running.url}/v1/routes/search",
            json=ROUTE,
            headers={"Authorization": f"Bearer {admin}"},
            timeout=30,
        )
        assert r.status_code in (200, 201), r.text
        yield running.url, ingest
    db.dispose()


def test_the_first_call_after_init_is_routed(logos: tuple[str, str]) -> None:
    """With a server (and no saved config on disk), init() waits for the first config by
    default, so the very first call already goes to the route's variant."""
    url, key = logos
    sink = logos_shift.MemorySink()
    ls = logos_shift.init(server_url=url, api_key=key, sink=sink)

    def search_v2(q: str) -> str:
        return f"v2:{q}"

    @ls(dataset="search", variants={"v2": search_v2})
    def search(q: str) -> str:
        return f"v1:{q}"

    assert [search(f"q{i}") for i in range(3)] == ["v2:q0", "v2:q1", "v2:q2"]
    assert ls.flush(timeout=10)
    first = sink.records()[0]
    assert (first["route"], first["variant"]) == ("search", "v2")
    assert ls.shutdown()


def test_a_server_that_does_not_answer_delays_init_by_at_most_the_wait(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A server that accepts but never answers: init gives up after wait_for_config and says
    so in one warning; calls then keep their own model."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        with caplog.at_level(logging.WARNING, logger="logos_shift"):
            ls = logos_shift.LogosShift(server_url=url, api_key="k", wait_for_config=0.3)
        messages = [r.getMessage() for r in caplog.records]
        assert any(
            m.startswith(f"logos_shift: no routing config from {url} within wait_for_config=0.3s")
            for m in messages
        ), messages
        ls.shutdown(timeout=1)


def test_without_a_server_nothing_waits_and_nothing_polls() -> None:
    """A local-only instance has no router; a routes file is read in the constructor."""
    ls = logos_shift.LogosShift(sink=logos_shift.MemorySink())
    assert ls.router is None
    assert ls.shutdown()


@pytest.mark.parametrize("bad", [-1, "2", True, float("nan")])
def test_a_bad_wait_is_a_clear_error(bad: Any) -> None:
    """wait_for_config must be seconds >= 0."""
    with pytest.raises(ValueError, match="wait_for_config must be a number of seconds >= 0"):
        logos_shift.LogosShift(server_url="http://127.0.0.1:9", wait_for_config=bad)


def test_a_missing_routes_file_is_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """routes= naming a file that does not exist warns once, naming the absolute path."""
    path = tmp_path / "routes.json"
    with caplog.at_level(logging.WARNING, logger="logos_shift"):
        ls = logos_shift.LogosShift(routes=str(path), sink=logos_shift.MemorySink())
    assert [r.getMessage() for r in caplog.records] == [
        f"logos_shift: routes file {path} does not exist (yet): every call keeps its own model "
        "until it appears (it is checked about once a second)"
    ]
    assert ls.shutdown()
