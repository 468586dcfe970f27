"""Fixtures shared by the whole suite."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from logos_shift import _guard
from logos_shift._capture import scope
from logos_shift._transport.worker import WORKER

# The public fake provider fixture, as users enable it in their own suites.
pytest_plugins = ["logos_shift.testing"]


@pytest.fixture(autouse=True)
def _internal_errors_raise() -> Iterator[None]:
    """Make logos_shift's internal guard re-raise, so no bug hides in a test."""
    _guard.RAISE_INTERNAL = True
    _guard.FAULTS.clear()
    yield
    _guard.FAULTS.clear()


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Remove LOGOS_SHIFT_* settings and point the default spool at a temp dir."""
    for key in list(os.environ):
        if key.startswith(("LOGOS_SHIFT_", "OPENAI_", "ANTHROPIC_")):
            monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(autouse=True)
def _shutdown_clients() -> Iterator[None]:
    """Shut down every instance a test created and reset the default."""
    yield
    with WORKER.lock:
        channels = list(WORKER.channels)
    for ch in channels:
        WORKER.close(ch, 2.0)
    scope.set_default(None)
