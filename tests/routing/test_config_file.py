"""Local routes file: loaded at start, reloaded on change, bad files rejected."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import pytest

from logos_shift import _guard
from logos_shift.routing.router import Router


class Clock:
    """A hand-driven monotonic clock."""

    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def doc(version: int, variant_pct: float = 1.0, kill_switch: bool = False) -> dict[str, Any]:
    return {
        "version": version,
        "routes": {
            "support": {
                "match": {"dataset": "support", "model": "gpt-4o"},
                "control": {"name": "base", "model": "gpt-4o"},
                "variants": [{"name": "ft-1", "model": f"ft:v{version}"}],
                "rollout": {"variant_pct": variant_pct},
                "kill_switch": kill_switch,
            }
        },
    }


def write(path: Path, content: Any) -> None:
    text = content if isinstance(content, str) else json.dumps(content)
    path.write_text(text)
    # Make the change visible even on file systems with coarse mtimes.
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


def served_model(r: Router) -> str | None:
    d = r.decide("support", "gpt-4o", {"user_id": "u1"})
    return None if d is None else d.model


@pytest.fixture
def clock() -> Clock:
    """A fake clock for the router's file checks."""
    return Clock()


def test_file_is_loaded_at_construction(tmp_path: Path, clock: Clock) -> None:
    """The routes file is in force from the first call, before any poll."""
    path = tmp_path / "routes.json"
    write(path, doc(1))
    r = Router(routes=path, clock=clock)
    assert served_model(r) == "ft:v1"
    stats = r.stats()
    assert stats["config"]["origin"] == f"file:{path}"
    assert stats["source"]["loads"] == 1


def test_changed_file_is_reloaded_on_the_next_due_poll(tmp_path: Path, clock: Clock) -> None:
    """After the file changes, the next due poll swaps in the new config; earlier polls do not."""
    path = tmp_path / "routes.json"
    write(path, doc(1))
    r = Router(routes=path, clock=clock, file_check_seconds=1.0)
    write(path, doc(2))
    clock.t += 0.5
    assert r.poll() == 101.0
    assert served_model(r) == "ft:v1"
    clock.t += 0.6
    r.poll()
    assert served_model(r) == "ft:v2"
    assert r.next_poll_due() == pytest.approx(102.1)


def test_unchanged_file_is_not_reparsed(tmp_path: Path, clock: Clock) -> None:
    """Polling an unchanged file does not reload it."""
    path = tmp_path / "routes.json"
    write(path, doc(1))
    r = Router(routes=path, clock=clock)
    for _ in range(5):
        clock.t += 2
        r.poll()
    assert r.stats()["source"]["loads"] == 1
    assert r.stats()["config"]["swaps"] == 1


def test_invalid_json_is_rejected_and_previous_kept(
    tmp_path: Path, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """A file that is not JSON is rejected with a warning and the previous config stays."""
    path = tmp_path / "routes.json"
    write(path, doc(1))
    r = Router(routes=path, clock=clock)
    write(path, '{"version": 2, "routes": {')
    with caplog.at_level(logging.WARNING, logger="logos_shift"):
        r.refresh_now()
    assert served_model(r) == "ft:v1"
    assert "rejected, previous config kept" in caplog.text
    assert r.stats()["source"]["rejected"] == 1
    assert "not valid JSON" in r.stats()["source"]["last_error"]


def test_invalid_schema_is_rejected_with_the_precise_error(
    tmp_path: Path, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """A schema error is logged with its path and the previous config stays in force."""
    path = tmp_path / "routes.json"
    write(path, doc(1))
    r = Router(routes=path, clock=clock)
    bad = doc(2)
    del bad["routes"]["support"]["variants"][0]["model"]
    write(path, bad)
    with caplog.at_level(logging.WARNING, logger="logos_shift"):
        r.refresh_now()
    assert served_model(r) == "ft:v1"
    assert "routes.support.variants[0].model: required" in caplog.text
    # Fixing the file brings the new version in.
    write(path, doc(3))
    r.refresh_now()
    assert served_model(r) == "ft:v3"


def test_missing_file_at_start_means_no_routing_until_it_appears(
    tmp_path: Path, clock: Clock
) -> None:
    """With no file yet every call keeps its model; the file is picked up once created."""
    path = tmp_path / "routes.json"
    r = Router(routes=path, clock=clock)
    assert r.config is None
    assert served_model(r) is None
    write(path, doc(4))
    clock.t += 1.5
    r.poll()
    assert served_model(r) == "ft:v4"


def test_deleted_file_keeps_the_config(
    tmp_path: Path, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """Deleting the routes file keeps the last config (with a warning) instead of dropping it."""
    path = tmp_path / "routes.json"
    write(path, doc(1))
    r = Router(routes=path, clock=clock)
    path.unlink()
    with caplog.at_level(logging.WARNING, logger="logos_shift"):
        r.refresh_now()
    assert served_model(r) == "ft:v1"
    assert "unreadable" in caplog.text


def test_kill_switch_in_the_file_acts_on_the_next_poll(tmp_path: Path, clock: Clock) -> None:
    """Turning the kill switch on in the file sends everyone to control after one poll."""
    path = tmp_path / "routes.json"
    write(path, doc(1))
    r = Router(routes=path, clock=clock)
    write(path, doc(1, kill_switch=True))
    clock.t += 1.1
    r.poll()
    assert served_model(r) == "gpt-4o"


def test_poll_never_raises_even_when_the_source_fails(tmp_path: Path, clock: Clock) -> None:
    """An internal error while polling is swallowed by the guard and retried later."""
    path = tmp_path / "routes.json"
    write(path, doc(1))
    r = Router(routes=path, clock=clock)
    _guard.FAULTS.add("router.poll")
    clock.t += 5
    assert r.poll() == clock.t + 30.0
    assert served_model(r) == "ft:v1"
