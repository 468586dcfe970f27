"""The framework tier: real frameworks over the real SDKs against the fake provider.

Every scenario runs twice in the same process: with no logos_shift patch, then
patched, each time from scratch (new clients, new event loop).  The tier asserts the
framework's result is the same both times and that the patched run left right
records in the local JSONL copy, which is then exported as fine-tuning data with
``logos-shift export``.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

import logos_shift
from logos_shift import cli
from logos_shift.testing import FakeProvider, RecordedRequest

from ._checks import inference, norm


@dataclass
class Run:
    """The two runs of one scenario and what the patched one left behind."""

    plain: Any
    patched: Any
    records: list[dict[str, Any]]
    requests: list[RecordedRequest]
    examples: list[dict[str, Any]] = field(default_factory=list)
    export_counts: str = ""

    @property
    def value(self) -> Any:
        """The framework's result of the patched run (raises if it raised)."""
        kind, value = self.patched
        assert kind == "returned", f"the scenario raised {value}"
        return value


def _outcome(scenario: Callable[[], Any], clients: list[Any]) -> tuple[str, Any]:
    """Run a scenario, then close the SDK clients it made (an async one in its loop)."""

    async def closing(coro: Any) -> Any:
        try:
            return await coro
        finally:
            while clients:
                closed = clients.pop().close()
                if inspect.isawaitable(closed):
                    await closed

    try:
        result = scenario()
        if inspect.iscoroutine(result):
            result = asyncio.run(closing(result))
    except Exception as exc:
        return "raised", (type(exc).__name__, getattr(exc, "status_code", None))
    finally:
        while clients:
            closed = clients.pop().close()
            if inspect.iscoroutine(closed):
                asyncio.run(closed)
    return "returned", result


class Tier:
    """Runs a scenario plain and patched; reads back the records."""

    def __init__(self, fp: FakeProvider, tmp_path: Path) -> None:
        self.fp = fp
        self.path = tmp_path / "calls.jsonl"
        self.ls = logos_shift.init(filename=str(self.path))
        self._clients: list[Any] = []

    def client(self, sdk: str, *, is_async: bool = True, retries: int = 0, **kw: Any) -> Any:
        """A new openai / anthropic client on the fake, closed when the scenario ends.

        Args:
            sdk: ``"openai"`` or ``"anthropic"``.
            is_async: make the ``Async*`` client.
            retries: the SDK's ``max_retries``.
            **kw: more client arguments.
        """
        if sdk == "openai":
            cls: Any = openai.AsyncOpenAI if is_async else openai.OpenAI
            client = cls(
                base_url=self.fp.openai_base_url, api_key="test", max_retries=retries, **kw
            )
        else:
            cls = anthropic.AsyncAnthropic if is_async else anthropic.Anthropic
            client = cls(
                base_url=self.fp.anthropic_base_url, api_key="test", max_retries=retries, **kw
            )
        return self.track(client)

    def track(self, client: Any) -> Any:
        """Close ``client`` (an SDK client a framework built) when the scenario ends."""
        self._clients.append(client)
        return client

    def records(self) -> list[dict[str, Any]]:
        """Every call record written to the local copy so far, in order."""
        assert self.ls.flush(timeout=10)
        if not self.path.exists():
            return []
        lines = self.path.read_text(encoding="utf-8").splitlines()
        return [r for r in map(json.loads, lines) if r["type"] == "call"]

    def export(self) -> tuple[list[dict[str, Any]], str]:
        """``logos-shift export --from calls.jsonl --format openai-chat``: examples, summary."""
        if not self.path.exists():
            return [], ""
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = cli.main(["export", "--from", str(self.path), "--format", "openai-chat"])
        assert status == 0, err.getvalue()
        return [json.loads(line) for line in out.getvalue().splitlines()], err.getvalue()

    def run(self, scenario: Callable[[], Any], *, compare: bool = True) -> Run:
        """Run ``scenario`` (sync, or returning a coroutine) plain, then patched.

        Args:
            scenario: makes its own clients (and scripts the fake) and returns the
                framework's result.
            compare: assert the two results are equal (normalised) and that both runs
                sent the same requests.

        Returns:
            The two outcomes, the call records and requests of the patched run, and
            the exported examples.
        """
        logos_shift.unpatch_all()
        self.fp.clear()
        plain = _outcome(scenario, self._clients)
        plain_requests = inference(self.fp.requests)
        assert self.records() == [], "an unpatched run left records"
        logos_shift.patch_all()
        self.fp.clear()
        patched = _outcome(scenario, self._clients)
        requests = inference(self.fp.requests)
        records = self.records()
        examples, counts = self.export()
        if compare:
            assert norm(patched) == norm(plain), "the framework's result changed with the patch"
            assert [norm(r.body) for r in requests] == [norm(r.body) for r in plain_requests], (
                "the patch changed what the framework sent"
            )
        return Run(plain, patched, records, requests, examples, counts)


@pytest.fixture
def tier(fake_provider: FakeProvider, tmp_path: Path) -> Iterator[Tier]:
    """A :class:`Tier` on a fresh fake provider and local copy; unpatched afterwards."""
    yield Tier(fake_provider, tmp_path)
    logos_shift.unpatch_all()
