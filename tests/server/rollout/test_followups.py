"""Follow-up fine-tunes after a promotion: their control, a failure, a rollback."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from logos_shift.cli import main
from logos_shift.testing import FakeProvider
from tests.server.rollout.support import Server, seed_dataset, start_finetune

POLICY = {"min_per_arm": 10, "min_stage_s": 0}


def _route(server: Server) -> dict[str, Any]:
    return dict(server.get("/v1/config", key=server.ingest_key).json()["routes"]["support"])


def _promoted(server: Server, fp: FakeProvider) -> str:
    """Fine-tune, then promote by hand; returns the promoted model."""
    seed_dataset(server)
    start_finetune(server, fp, POLICY)
    assert server.post("/v1/routes/support/rollout/promote").json()["action"] == "promote"
    model = str(_route(server)["variants"][0]["model"])
    assert _route(server)["rollout"]["variant_pct"] == 1.0
    return model


def test_a_failed_followup_keeps_serving_the_promoted_model(
    server: Server, fake_provider: FakeProvider, capsys: pytest.CaptureFixture[str]
) -> None:
    """A follow-up job that fails leaves the route on the promoted model, and status says so."""
    first = _promoted(server, fake_provider)
    fake_provider.finetune_schedule(
        seconds_per_phase=0, outcome="failed", error={"code": "oom", "message": "out of memory"}
    )
    r = server.post("/v1/finetune", {"dataset": "support", "base_model": "m", "policy": POLICY})
    assert r.status_code == 202
    assert server.service.wait_idle(30)
    status = server.get("/v1/routes/support/rollout").json()
    assert status["state"]["status"] == "failed"
    assert status["state"]["control_model"] == first
    assert status["serving"]["model"] == first
    route = _route(server)
    assert route["variants"][0]["model"] == first
    assert route["rollout"]["variant_pct"] == 1.0
    args = ["--server", server.url, "--api-key", server.admin]
    assert main(["rollout", "status", "support", *args]) == 0
    line = capsys.readouterr().out.splitlines()[0]
    assert line.startswith(f"route support: serving {first} since ")
    assert "last fine-tune failed: " in line
    assert "oom: out of memory" in line
    # The next fine-tune's control is still the promoted model.
    fake_provider.finetune_schedule(outcome="succeeded")
    start_finetune(server, fake_provider, POLICY)
    status = server.get("/v1/routes/support/rollout").json()
    assert status["state"]["status"] == "canary"
    assert status["state"]["control_model"] == first
    assert _route(server)["control"]["model"] == first


def test_a_rolled_back_second_model_returns_to_the_first(
    server: Server, fake_provider: FakeProvider
) -> None:
    """Rolling back the model after a promoted one serves the promoted one, not the original."""
    first = _promoted(server, fake_provider)
    start_finetune(server, fake_provider, POLICY)
    second = _route(server)["variants"][0]["model"]
    assert second != first
    assert _route(server)["control"]["model"] == first
    assert server.post("/v1/routes/support/rollout/rollback").json()["action"] == "rollback"
    route = _route(server)
    assert route["control"]["model"] == first
    assert route["rollout"]["variant_pct"] == 0


def test_an_unreachable_backend_after_a_promotion_keeps_the_promoted_model(
    server: Server, fake_provider: FakeProvider
) -> None:
    """A follow-up whose backend cannot be reached fails at once; the route serves as before."""
    first = _promoted(server, fake_provider)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    body = {"dataset": "support", "base_model": "m",
            "backend_url": f"http://127.0.0.1:{port}/v1", "backend_api_key": "k"}  # fmt: skip
    assert server.post("/v1/finetune", body).status_code == 502
    status = server.get("/v1/routes/support/rollout").json()
    assert status["state"]["status"] == "failed"
    assert status["serving"]["model"] == first
    assert _route(server)["variants"][0]["model"] == first


def test_a_crash_mid_transition_leaves_the_previous_state(
    server: Server, fake_provider: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A transition that fails after its state and event are written commits none of it."""
    from logos_shift.server.rollout import route_sync

    seed_dataset(server)
    start_finetune(server, fake_provider, POLICY)
    before = server.get("/v1/routes/support/rollout").json()
    route_before = _route(server)

    def crash(*_args: Any) -> None:
        raise RuntimeError("the process died here")

    monkeypatch.setattr(route_sync, "sync_route", crash)
    with pytest.raises(RuntimeError):
        server.service.action(1, "support", "promote")
    monkeypatch.undo()
    after = server.get("/v1/routes/support/rollout").json()
    assert after["state"] == before["state"]
    assert after["events"] == before["events"]
    assert _route(server) == route_before
    assert server.post("/v1/routes/support/rollout/promote").json()["action"] == "promote"
