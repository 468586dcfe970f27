"""Signed webhooks: a secret shown once, ``X-Logos-Signature`` (timestamp + HMAC-SHA256 over
timestamp and body), a delivery id kept across retries, and the package's verification helper."""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from logos_shift.testing import FakeProvider
from tests.server.rollout.support import seed_dataset
from tests.server.security.conftest import Running
from tests.server.security.support import Listener, Seen
from tests.server.security.test_outbound import BODY, settings

README = Path(__file__).resolve().parents[3] / "README.md"


def _flaky() -> Callable[[Seen], tuple[int, dict[str, str], bytes]]:
    calls = {"n": 0}

    def reply(_seen: Seen) -> tuple[int, dict[str, str], bytes]:
        calls["n"] += 1
        return (500 if calls["n"] == 1 else 200), {}, b""

    return reply


def _deliveries(
    launch: Callable[..., Running], listen: Callable[..., Listener], fp: FakeProvider
) -> tuple[Running, Listener, str]:
    hook = listen(host="127.0.0.2", reply=_flaky())
    server = launch(settings(backends={"fake": (fp.openai_base_url, "k")}, allow=["127.0.0.2/32"]))
    seed_dataset(server.api)
    fp.finetune_schedule(seconds_per_phase=0)
    r = server.post("/v1/finetune", {**BODY, "backend": "fake", "webhook_url": hook.url("/h")})
    assert r.status_code == 202, r.text
    secret = r.json()["webhook_secret"]
    assert secret.startswith("whsec_")
    assert server.service.wait_idle(30)
    return server, hook, secret


def test_webhook_deliveries_are_signed_and_retries_keep_their_id(
    launch: Callable[..., Running], listen: Callable[..., Listener], fake_provider: FakeProvider
) -> None:
    """Every delivery verifies with the secret; a retried one has the same delivery id; the
    secret is shown once (the 202) and never again."""
    from logos_shift.webhooks import verify_signature

    server, hook, secret = _deliveries(launch, listen, fake_provider)
    assert len(hook.seen) >= 3  # training_started (failed once, retried), job_status, ...
    for seen in hook.seen:
        header = seen.headers["X-Logos-Signature"]
        assert re.fullmatch(r"t=\d+,v1=[0-9a-f]{64}", header)
        verify_signature(secret, seen.body, header)
        assert re.fullmatch(r"[0-9a-f]{32}", seen.headers["X-Logos-Delivery"])
        assert seen.headers["X-Logos-Event"]
    ids = [s.headers["X-Logos-Delivery"] for s in hook.seen]
    assert ids[0] == ids[1]  # the first attempt failed (500); the retry keeps its id
    assert len(set(ids)) == len(ids) - 1
    status = server.get("/v1/routes/support/rollout").text
    assert secret not in status
    assert "webhook_secret" not in status


def test_verify_signature_refuses_tampering_wrong_secrets_and_old_timestamps() -> None:
    """The helper accepts the exact body within the tolerance and refuses everything else."""
    from logos_shift.webhooks import InvalidSignature, sign, verify_signature

    body = b'{"action":"promote"}'
    now = 1_800_000_000
    header = sign("whsec_abc", body, timestamp=now)
    t, v1 = header.split(",")
    expected = hmac.new(b"whsec_abc", f"{now}.".encode() + body, hashlib.sha256).hexdigest()
    assert (t, v1) == (f"t={now}", f"v1={expected}")
    verify_signature("whsec_abc", body, header, now=now + 299)
    for args in [
        ("whsec_abc", body + b" ", header, now),
        ("whsec_other", body, header, now),
        ("whsec_abc", body, header, now + 301),
        ("whsec_abc", body, header, now - 301),
        ("whsec_abc", body, "t=1,v1=00", now),
        ("whsec_abc", body, "garbage", now),
        ("whsec_abc", body, "", now),
    ]:
        with pytest.raises(InvalidSignature):
            verify_signature(args[0], args[1], args[2], now=args[3])


def test_the_readme_verification_snippet_accepts_a_real_delivery(
    launch: Callable[..., Running], listen: Callable[..., Listener], fake_provider: FakeProvider
) -> None:
    """The README's receiver snippet verifies a delivery the server really sent."""
    _, hook, secret = _deliveries(launch, listen, fake_provider)
    text = README.read_text()
    m = re.search(r"```python\n(# Verifying a webhook.*?)```", text, re.S)
    assert m, "the README has no webhook verification snippet"
    namespace: dict[str, object] = {}
    exec(compile(m.group(1), "README.md", "exec"), namespace)
    handle = namespace["handle"]
    seen = hook.seen[-1]
    assert callable(handle)
    assert handle(seen.body, seen.headers, secret) is True
    assert handle(seen.body + b"x", seen.headers, secret) is False
    assert time.time()  # the snippet checks the timestamp against the clock
