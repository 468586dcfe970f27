"""No reflection: what a backend or webhook answers never comes back to the caller, the stored
state, the events, the logs or the webhooks (beyond a status and a fixed message); URLs are
logged without credentials."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

import pytest

from logos_shift.testing import FakeProvider
from tests.server.rollout.support import seed_dataset
from tests.server.security.conftest import Running
from tests.server.security.support import Listener, answer, fake_finetune_api
from tests.server.security.test_outbound import BODY, settings

SECRET = "internal-token-7f3a9c"


def _everything(server: Running, caplog: pytest.LogCaptureFixture) -> str:
    status = server.get("/v1/routes/support/rollout")
    logs = "\n".join(
        f"{r.getMessage()} {json.dumps(r.__dict__, default=str)}" for r in caplog.records
    )
    return status.text + "\n" + logs


def test_a_backend_error_body_is_not_reflected(
    launch: Callable[..., Running],
    listen: Callable[..., Listener],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An internal service answering 404 with a secret: the 502, state, events and logs
    carry the status and a fixed message only."""
    caplog.set_level(logging.DEBUG, logger="logos_shift")
    internal = listen(host="127.0.0.2", reply=answer(404, {"error": {"message": SECRET}}))
    server = launch(settings(allow=["127.0.0.2/32"]))
    seed_dataset(server.api)
    r = server.post(
        "/v1/finetune", {**BODY, "backend_url": internal.url("/v1"), "backend_api_key": "k"}
    )
    assert r.status_code == 502
    assert SECRET not in r.text
    assert "HTTP 404" in r.json()["message"]
    assert server.service.wait_idle(10)
    assert SECRET not in _everything(server, caplog)


def test_a_project_backend_job_texts_are_not_reflected(
    launch: Callable[..., Running],
    listen: Callable[..., Listener],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A project backend's job error and event messages (2xx bodies) are not stored, shown,
    logged or sent to the webhook: only the job's id, status and error code are."""
    caplog.set_level(logging.DEBUG, logger="logos_shift")
    backend = listen(host="127.0.0.2", reply=fake_finetune_api(SECRET))
    hook = listen(host="127.0.0.3")
    server = launch(settings(allow=["127.0.0.2/32", "127.0.0.3/32"]))
    seed_dataset(server.api)
    body = {**BODY, "backend_url": backend.url("/v1"), "backend_api_key": "k",
            "webhook_url": hook.url("/hook")}  # fmt: skip
    r = server.post("/v1/finetune", body)
    assert r.status_code == 202, r.text
    assert SECRET not in r.text
    assert server.service.wait_idle(30)
    status = server.get("/v1/routes/support/rollout").json()
    assert status["state"]["status"] == "failed"
    assert "server_error" in status["state"]["reason"]
    assert SECRET not in _everything(server, caplog)
    assert hook.seen
    assert SECRET not in hook.everything()


def test_an_operator_backend_error_text_is_logged_at_debug_only(
    launch: Callable[..., Running],
    listen: Callable[..., Listener],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """For a backend the operator configured, the full error text is in the debug log only."""
    caplog.set_level(logging.DEBUG, logger="logos_shift")
    backend = listen(reply=answer(400, {"error": {"message": SECRET}}))
    server = launch(settings(backends={"ours": (backend.url("/v1"), "k")}))
    seed_dataset(server.api)
    r = server.post("/v1/finetune", {**BODY, "backend": "ours"})
    assert r.status_code == 502
    assert SECRET not in r.text
    assert "backend 'ours'" in r.json()["message"]
    assert server.service.wait_idle(10)
    debug = [rec for rec in caplog.records if SECRET in rec.getMessage()]
    assert debug
    assert {rec.levelno for rec in debug} == {logging.DEBUG}
    assert SECRET not in server.get("/v1/routes/support/rollout").text


def test_a_failing_webhook_url_is_logged_without_credentials(
    launch: Callable[..., Running],
    listen: Callable[..., Listener],
    fake_provider: FakeProvider,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A webhook URL's user, password and query never reach the logs or the status answer."""
    caplog.set_level(logging.DEBUG, logger="logos_shift")
    hook = listen(host="127.0.0.2", reply=answer(500, {"error": SECRET}))
    server = launch(
        settings(backends={"fake": (fake_provider.openai_base_url, "k")}, allow=["127.0.0.2/32"])
    )
    seed_dataset(server.api)
    fake_provider.finetune_schedule(seconds_per_phase=0)
    url = f"http://alice:hunter2pw@127.0.0.2:{hook.port}/hook?token=tok-5e2b"
    r = server.post("/v1/finetune", {**BODY, "backend": "fake", "webhook_url": url})
    assert r.status_code == 202, r.text
    assert server.service.wait_idle(30)
    assert hook.seen  # it was called (and failed, with retries)
    text = _everything(server, caplog)
    assert f"127.0.0.2:{hook.port}/hook" in text
    for secret in ("hunter2pw", "tok-5e2b", "alice", SECRET):
        assert secret not in text, secret
