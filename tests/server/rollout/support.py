"""Helpers of the rollout tests: a running server with its rollout service, records."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import requests

from logos_shift import _ids
from logos_shift._capture import record as _records
from logos_shift.server import RolloutService


@dataclass
class Server:
    """A running server, its keys and its rollout service."""

    url: str
    admin: str
    ingest_key: str
    service: RolloutService
    http: requests.Session

    def post(self, path: str, body: Any = None, key: str | None = None) -> requests.Response:
        """POST JSON with the admin key (or ``key``)."""
        return self.http.post(
            self.url + path, json=body, headers={"Authorization": f"Bearer {key or self.admin}"}
        )

    def get(self, path: str, key: str | None = None) -> requests.Response:
        """GET with the admin key (or ``key``)."""
        return self.http.get(
            self.url + path, headers={"Authorization": f"Bearer {key or self.admin}"}
        )

    def ingest(self, records: list[dict[str, Any]]) -> None:
        """Ingest records and check every one was accepted."""
        for i in range(0, len(records), 2000):
            r = self.post("/v1/ingest", records[i : i + 2000], key=self.ingest_key)
            assert r.status_code == 200, r.text
            assert r.json()["errors"] == 0, r.text


def call(question: str, answer: str, **fields: Any) -> dict[str, Any]:
    """Build a chat call record (the wire schema)."""
    rec: dict[str, Any] = {
        "schema": 1,
        "type": "call",
        "id": _ids.new_id(),
        "ts": _records.format_ts(time.time()),
        "dataset": "support",
        "source": "openai.chat.completions",
        "provider": "openai",
        "requested_model": "gpt-4o",
        "served_model": "gpt-4o",
        "input": {"model": "gpt-4o", "messages": [{"role": "user", "content": question}]},
        "output": {"choices": [{"message": {"role": "assistant", "content": answer}}]},
        "latency_ms": 100.0,
        "usage": {"input_tokens": 10, "output_tokens": 20},
    }
    rec.update(fields)
    return rec


def feedback(target: str, outcome: str) -> dict[str, Any]:
    """Build a feedback record."""
    return {
        "schema": 1,
        "type": "feedback",
        "id": _ids.new_id(),
        "ts": _records.format_ts(time.time()),
        "target": target,
        "outcome": outcome,
    }


def seed_dataset(server: Server, n: int = 40) -> None:
    """Ingest ``n`` chat calls of dataset ``support``, each with success feedback."""
    calls = [call(f"question {i}", f"Echo: question {i}") for i in range(n)]
    server.ingest(calls + [feedback(c["id"], "success") for c in calls])


def start_finetune(server: Server, fp: Any, policy: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """Start a fine-tune of ``support`` on the fake backend (the server's default backend,
    see the ``server`` fixture); wait until the service is idle.

    Returns:
        The ``POST /v1/finetune`` answer (asserted to be 202).
    """
    fp.finetune_schedule(seconds_per_phase=0)
    body = {
        "dataset": "support",
        "base_model": "gpt-4o-mini",
        "policy": policy,
        **extra,
    }
    r = server.post("/v1/finetune", body)
    assert r.status_code == 202, r.text
    assert server.service.wait_idle(30)
    return dict(r.json())
