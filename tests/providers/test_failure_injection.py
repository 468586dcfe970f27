"""Every internal capture step raising in turn leaves the user's view unchanged."""

from __future__ import annotations

import asyncio

import pytest
from _provider_scenarios import run_async, run_sync
from test_matrix import _client

from logos_shift import _guard, _patching
from logos_shift.testing import FakeProvider, capture_records

STEPS = ("capture.start", "capture.result", "capture.finish", "capture.submit", "router",
         "stream.chunk", "stream.wrap", "stream.manager", "stream.close", "submit")  # fmt: skip
SCENARIOS = (("plain", "exhaust"), ("raw", "exhaust"), ("stream", "exhaust"),
             ("stream", "break"), ("raw_stream", "ctx"), ("helper", "final"),
             ("streaming_response", "exhaust"))  # fmt: skip


def _view(sdk: str, mode: str, form: str, ex: str, fp: FakeProvider) -> dict[str, object]:
    client = _client(sdk, mode, fp)
    if mode == "sync":
        try:
            return run_sync(client, form, ex)
        finally:
            client.close()

    async def go() -> dict[str, object]:
        try:
            return await run_async(client, form, ex)
        finally:
            await client.close()

    return asyncio.run(go())


@pytest.mark.parametrize("step", STEPS)
@pytest.mark.parametrize("sdk", ["openai", "anthropic"])
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_internal_fault_is_invisible(step: str, sdk: str, mode: str, fp: FakeProvider) -> None:
    """With `step` failing, every scenario returns what the unpatched SDK returns."""
    bare = [_view(sdk, mode, form, ex, fp) for form, ex in SCENARIOS]
    _patching.patch(sdk)
    _patching.ROUTE_HOOK = lambda info: None
    _guard.FAULTS.add(step)
    with capture_records():
        seen = [_view(sdk, mode, form, ex, fp) for form, ex in SCENARIOS]
    assert seen == bare
