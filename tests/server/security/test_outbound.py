"""Outbound requests: the operator's keys go only to the operator's backends, and
project-chosen URLs (backends, webhooks) reach public addresses only, pinned, no redirects.

Every "internal service" here is a listener the test starts on 127.0.0.x.
"""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Callable
from typing import Any

import pytest

from logos_shift.testing import FakeProvider
from tests.server.rollout.support import seed_dataset
from tests.server.security.conftest import Running
from tests.server.security.support import Listener, answer

OPERATOR_KEY = "sk-operator-secret-0123456789"
BODY = {"dataset": "support", "base_model": "gpt-4o-mini"}


def settings(**kwargs: Any) -> Any:
    """ServerSettings from keyword arguments (``backends`` as ``{name: (url, key)}``)."""
    from logos_shift.server import AddressPolicy, Backend, ServerSettings

    backends = {n: Backend(n, u, k) for n, (u, k) in kwargs.pop("backends", {}).items()}
    if "allow" in kwargs:
        kwargs["outbound"] = AddressPolicy(allow_networks=tuple(kwargs.pop("allow")))
    return ServerSettings(backends=backends, **kwargs)


def test_operator_key_is_never_sent_to_a_project_url(
    launch: Callable[..., Running],
    listen: Callable[..., Listener],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A project's backend_url without its own key is refused; the operator's key goes nowhere."""
    monkeypatch.setenv("LOGOS_SHIFT_FINETUNE_API_KEY", OPERATOR_KEY)
    internal = listen(reply=answer(200, {"id": "file-1"}))
    server = launch()
    seed_dataset(server.api)
    r = server.post("/v1/finetune", {**BODY, "backend_url": internal.url("/x?y=")})
    assert r.status_code == 422, r.text
    assert "backend_api_key" in r.json()["message"]
    assert OPERATOR_KEY not in internal.everything()
    assert internal.seen == []


def test_a_project_url_is_refused_without_its_own_key_even_when_allowed(
    launch: Callable[..., Running], listen: Callable[..., Listener]
) -> None:
    """Even an address the operator allows needs the project's own key: no key is lent."""
    backend = listen(host="127.0.0.2")
    server = launch(
        settings(
            backends={"openai": ("https://api.openai.com/v1", OPERATOR_KEY)}, allow=["127.0.0.2/32"]
        )
    )
    seed_dataset(server.api)
    r = server.post("/v1/finetune", {**BODY, "backend_url": backend.url("/v1")})
    assert r.status_code == 422
    assert backend.seen == []


LOOPBACK_SPELLINGS = [
    "localhost", "127.0.0.1", "127.1", "2130706433", "0x7f000001", "0.0.0.0",
    "[::ffff:127.0.0.1]", "LOCALHOST.",
]  # fmt: skip


@pytest.mark.parametrize("field", ["backend_url", "webhook_url"])
def test_loopback_in_every_spelling_is_refused(
    launch: Callable[..., Running],
    listen: Callable[..., Listener],
    fake_provider: FakeProvider,
    field: str,
) -> None:
    """Every spelling of loopback is refused (422) for backends and webhooks; nothing is sent."""
    internal = listen(host="0.0.0.0")
    server = launch(settings(backends={"fake": (fake_provider.openai_base_url, "k")}))
    seed_dataset(server.api)
    for host in LOOPBACK_SPELLINGS:
        url = internal.url("/v1", host=host)
        body = {**BODY, "backend_url": url, "backend_api_key": "project-key"}
        if field == "webhook_url":
            body = {**BODY, "backend": "fake", "webhook_url": url}
        r = server.post("/v1/finetune", body)
        assert r.status_code == 422, (host, r.status_code, r.text)
        assert r.json()["error"] == "refused_url", host
    assert internal.seen == []


@pytest.mark.parametrize(
    "address",
    [
        "169.254.169.254",
        "10.1.2.3",
        "192.168.0.10",
        "172.16.0.1",
        "100.100.100.200",
        "[fd00:ec2::254]",
        "[fe80::1]",
        "224.0.0.1",
        "[::1]",
    ],
)
def test_private_link_local_multicast_and_metadata_are_refused(
    launch: Callable[..., Running], address: str
) -> None:
    """Private, shared, link-local, multicast and metadata addresses are refused by default."""
    server = launch()
    seed_dataset(server.api)
    r = server.post(
        "/v1/finetune",
        {**BODY, "backend_url": f"http://{address}:8080/v1", "backend_api_key": "k"},
    )
    assert r.status_code == 422, r.text
    assert r.json()["error"] == "refused_url"


def test_metadata_stays_refused_when_private_addresses_are_allowed(
    launch: Callable[..., Running],
) -> None:
    """allow_private opens private networks but not the cloud metadata service."""
    from logos_shift.server import AddressPolicy, ServerSettings

    server = launch(ServerSettings(outbound=AddressPolicy(allow_private=True)))
    seed_dataset(server.api)
    body = {**BODY, "backend_url": "http://169.254.169.254/latest", "backend_api_key": "k"}
    r = server.post("/v1/finetune", body)
    assert r.status_code == 422
    assert "metadata" in r.json()["message"]


def test_a_configured_backend_is_chosen_by_name_and_gets_only_its_key(
    launch: Callable[..., Running], fake_provider: FakeProvider
) -> None:
    """``backend: name`` uses the operator's URL and key; an unknown name is a 422 naming the
    configured ones; a project key is not accepted for an operator backend."""
    server = launch(settings(backends={"fake": (fake_provider.openai_base_url, OPERATOR_KEY)}))
    seed_dataset(server.api)
    fake_provider.finetune_schedule(seconds_per_phase=0)
    r = server.post("/v1/finetune", {**BODY, "backend": "nope"})
    assert r.status_code == 422
    assert "fake" in r.json()["message"]
    r = server.post("/v1/finetune", {**BODY, "backend": "fake", "backend_api_key": "x"})
    assert r.status_code == 422
    r = server.post("/v1/finetune", {**BODY, "backend": "fake"})
    assert r.status_code == 202, r.text
    assert server.service.wait_idle(30)
    auth = {q.headers.get("authorization") for q in fake_provider.requests}
    assert auth == {f"Bearer {OPERATOR_KEY}"}
    status = server.get("/v1/routes/support/rollout").json()
    assert status["info"]["backend"] == "fake"
    assert OPERATOR_KEY not in str(status)


def test_an_allowed_project_backend_gets_the_project_key_only(
    launch: Callable[..., Running], fake_provider: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A project backend on a network the operator allows runs with the project's own key."""
    monkeypatch.setenv("LOGOS_SHIFT_FINETUNE_API_KEY", OPERATOR_KEY)
    from logos_shift.server import AddressPolicy, ServerSettings

    env = ServerSettings.load()  # the operator's key, from the environment, is configured
    assert env.backend_for(None) is not None
    server = launch(
        dataclasses.replace(env, outbound=AddressPolicy(allow_networks=("127.0.0.1/32",)))
    )
    seed_dataset(server.api)
    fake_provider.finetune_schedule(seconds_per_phase=0)
    body = {**BODY, "backend_url": fake_provider.openai_base_url, "backend_api_key": "proj-key"}
    r = server.post("/v1/finetune", body)
    assert r.status_code == 202, r.text
    assert server.service.wait_idle(30)
    auth = {q.headers.get("authorization") for q in fake_provider.requests}
    assert auth == {"Bearer proj-key"}
    assert server.get("/v1/routes/support/rollout").json()["state"]["status"] == "canary"


def test_dns_rebinding_cannot_move_a_checked_host(
    launch: Callable[..., Running], listen: Callable[..., Listener], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The address checked is the address connected to: a name that first resolves to an
    allowed address and then to a refused one never reaches the refused one."""
    allowed = listen(host="127.0.0.2", reply=answer(200, {"id": "file-1"}))
    refused = listen(host="127.0.0.3", port=allowed.port, reply=answer(200, {"id": "file-1"}))
    real = socket.getaddrinfo
    answers = iter(["127.0.0.2"])

    def rebinding(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "rebind.test":
            return real(next(answers, "127.0.0.3"), port, *args, **kwargs)
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    server = launch(settings(allow=["127.0.0.2/32"]))
    seed_dataset(server.api)
    body = {**BODY, "backend_url": f"http://rebind.test:{allowed.port}/v1",
            "backend_api_key": "k"}  # fmt: skip
    r = server.post("/v1/finetune", body)
    assert r.status_code == 502, r.text
    assert refused.seen == []


def test_backend_redirects_are_not_followed(
    launch: Callable[..., Running], listen: Callable[..., Listener]
) -> None:
    """A project backend answering 307 is a failure; the redirect target gets nothing."""
    target = listen(host="127.0.0.3")
    backend = listen(host="127.0.0.2", reply=answer(307, {}, Location=target.url("/v1/files")))
    server = launch(settings(allow=["127.0.0.2/32", "127.0.0.3/32"]))
    seed_dataset(server.api)
    r = server.post(
        "/v1/finetune", {**BODY, "backend_url": backend.url("/v1"), "backend_api_key": "k"}
    )
    assert r.status_code == 502, r.text
    assert len(backend.seen) == 1
    assert target.seen == []


@pytest.mark.parametrize("status", [307, 302])
def test_webhook_redirects_are_not_followed(
    launch: Callable[..., Running],
    listen: Callable[..., Listener],
    fake_provider: FakeProvider,
    status: int,
) -> None:
    """A webhook answering 307 or 302 is a failed delivery: no re-POST, no GET elsewhere."""
    target = listen(host="127.0.0.3")
    hook = listen(host="127.0.0.2", reply=answer(status, {}, Location=target.url("/internal")))
    server = launch(
        settings(
            backends={"fake": (fake_provider.openai_base_url, "k")},
            allow=["127.0.0.2/32", "127.0.0.3/32"],
        )
    )
    seed_dataset(server.api)
    fake_provider.finetune_schedule(seconds_per_phase=0)
    r = server.post("/v1/finetune", {**BODY, "backend": "fake", "webhook_url": hook.url("/h")})
    assert r.status_code == 202, r.text
    assert server.service.wait_idle(30)
    assert hook.seen
    assert target.seen == []


def test_webhooks_to_internal_addresses_are_refused(
    launch: Callable[..., Running], listen: Callable[..., Listener], fake_provider: FakeProvider
) -> None:
    """A webhook on the server's own network is refused at start (422); it is never called."""
    internal = listen()
    server = launch(settings(backends={"fake": (fake_provider.openai_base_url, "k")}))
    seed_dataset(server.api)
    body = {**BODY, "backend": "fake", "webhook_url": internal.url("/hook")}
    r = server.post("/v1/finetune", body)
    assert r.status_code == 422
    assert r.json()["error"] == "refused_url"
    assert server.service.wait_idle(10)
    assert internal.seen == []


def test_finetune_launches_have_a_daily_quota_per_project(
    launch: Callable[..., Running], fake_provider: FakeProvider
) -> None:
    """Past launches_per_day a launch is a 429 with Retry-After; other projects are unaffected."""
    server = launch(
        settings(backends={"fake": (fake_provider.openai_base_url, "k")}, launches_per_day=2)
    )
    seed_dataset(server.api)
    # The jobs fail, so the routes never go live (two routes may not match one dataset):
    # a launch counts all the same.
    fake_provider.finetune_schedule(seconds_per_phase=0, outcome="failed")
    for i in range(2):
        r = server.post("/v1/finetune", {**BODY, "backend": "fake", "route": f"r{i}"})
        assert r.status_code == 202, r.text
    r = server.post("/v1/finetune", {**BODY, "backend": "fake", "route": "r2"})
    assert r.status_code == 429
    assert r.json()["error"] == "quota_exceeded"
    assert 0 < int(r.headers["Retry-After"]) <= 86400
    other = server.post("/v1/finetune", {**BODY, "backend": "fake"}, key=server.other_admin)
    # Its own quota is untouched: it fails on its dataset, which has no calls there.
    assert other.status_code == 404, other.text
    assert other.json()["error"] == "not_found"
    assert server.service.wait_idle(30)
