"""Every internal step failing in turn leaves the user's call unchanged."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

import logos_shift
from logos_shift import _guard

STEPS = [
    "decorator.begin", "decorator.finish", "clock", "ids", "enqueue", "serialize",
    "file_sink", "http_sink", "spool", "submit",
]  # fmt: skip


@pytest.fixture(params=STEPS)
def failing_step(request: pytest.FixtureRequest) -> Iterator[str]:
    """Make one named internal step raise for the duration of a test."""
    _guard.FAULTS.add(request.param)
    yield request.param
    _guard.FAULTS.discard(request.param)


def _client(tmp_path: Path) -> logos_shift.LogosShift:
    # A dead server (port 9 discards) forces upload failures, spills and files.
    return logos_shift.LogosShift(
        filename=str(tmp_path / "calls.jsonl"),
        server_url="http://127.0.0.1:9",
        api_key="k",
        spool_dir=str(tmp_path / "spool"),
        flush_interval=0.01,
    )


def test_sync_result_and_exception_unchanged(failing_step: str, tmp_path: Path) -> None:
    """A failing step never changes a sync function's result or exception."""
    ls = _client(tmp_path)
    err = ValueError("user error")

    @ls(dataset="d")
    def ok(x: int) -> list[int]:
        return [x]

    @ls()
    def bad() -> None:
        raise err

    assert ok(2) == [2]
    with pytest.raises(ValueError) as info:
        bad()
    assert info.value is err
    assert ls.provide_feedback("chatcmpl-1", "success") is not None or failing_step in STEPS
    ls.flush(2)
    ls.shutdown(1)
    stats = ls.stats()
    assert (
        stats["captured"] == stats["sent"] + stats["spooled"] + stats["dropped"] + stats["pending"]
    )


def test_async_and_dict_results_unchanged(failing_step: str, tmp_path: Path) -> None:
    """A failing step never changes an async function's result."""
    ls = _client(tmp_path)

    @ls()
    async def f() -> dict[str, int]:
        return {"a": 1}

    r = asyncio.run(f())
    assert r["a"] == 1
    assert set(r) <= {"a", "logos_shift_id"}
    ls.shutdown(1)


def test_generator_unchanged(failing_step: str, tmp_path: Path) -> None:
    """A failing step never changes what a generator yields."""
    ls = _client(tmp_path)

    @ls()
    def g() -> Iterator[int]:
        yield 1
        yield 2

    assert list(g()) == [1, 2]
    ls.shutdown(1)


def test_guard_reraises_real_bugs_under_tests() -> None:
    """Outside injected faults, the guard re-raises so bugs surface in tests."""
    with pytest.raises(ZeroDivisionError), _guard.guard("x"):
        1 / 0  # noqa: B018


def test_guard_swallows_in_production(caplog: pytest.LogCaptureFixture) -> None:
    """With RAISE_INTERNAL off, errors are logged and counted, not raised."""
    _guard.RAISE_INTERNAL = False
    try:
        before = _guard.ERRORS["prod-step"]
        with _guard.guard("prod-step"):
            raise RuntimeError("bug")
        assert _guard.ERRORS["prod-step"] == before + 1
        assert "prod-step" in caplog.text
    finally:
        _guard.RAISE_INTERNAL = True


def test_file_copy_still_written_when_upload_fails(tmp_path: Path) -> None:
    """The local copy does not depend on the server being reachable."""
    ls = _client(tmp_path)

    @ls()
    def f() -> int:
        return 1

    f()
    ls.shutdown(2)
    lines = (tmp_path / "calls.jsonl").read_text().splitlines()
    assert json.loads(lines[0])["output"] == 1
    st = ls.stats()
    assert st["spooled"] == 1
    assert st["sent"] == 0
