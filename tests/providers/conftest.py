"""Fixtures for provider tests: one fake provider, patching undone after each test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from logos_shift import _patching
from logos_shift.testing import FakeProvider


@pytest.fixture(scope="module")
def fp() -> Iterator[FakeProvider]:
    """A fake OpenAI/Anthropic server shared by the module's tests."""
    with FakeProvider() as provider:
        yield provider


@pytest.fixture(autouse=True)
def _unpatched(fp: FakeProvider) -> Iterator[None]:
    """Every test starts and ends with no SDK patched and no pending scripts."""
    _patching.unpatch("openai")
    _patching.unpatch("anthropic")
    _patching.ROUTE_HOOK = None
    fp.reset()
    yield
    _patching.unpatch("openai")
    _patching.unpatch("anthropic")
    _patching.ROUTE_HOOK = None
