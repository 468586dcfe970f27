"""Fixtures of the contract tests: patched SDKs and a second fake endpoint."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from logos_shift import providers
from logos_shift.testing import FakeProvider


@pytest.fixture(autouse=True)
def _patched() -> Iterator[None]:
    """Every SDK entry point is patched for the test, and only for it."""
    providers.unpatch_all()
    providers.patch_all()
    yield
    providers.unpatch_all()


@pytest.fixture
def second_provider() -> Iterator[FakeProvider]:
    """Another fake endpoint, for variants served from their own ``base_url``."""
    with FakeProvider() as fp:
        yield fp
