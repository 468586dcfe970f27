"""End to end over real sockets: clients patched with ``logos_shift.patch_openai()`` follow
the rollout — each stage's share of users reaches the fine-tuned model, and promotion and
rollback reach the clients at their next config refresh (one refresh, no more)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

import logos_shift
from logos_shift.testing import FakeProvider
from tests.server.rollout.support import Server, call, feedback

POLICY = {"stages": [0.1, 0.5, 1.0], "min_per_arm": 20, "min_stage_s": 0, "margin": 0.1}
USERS = 600


@pytest.fixture
def app_client(
    server: Server, fake_provider: FakeProvider, tmp_path: Path
) -> Iterator[tuple[Any, openai.OpenAI]]:
    """A logos_shift instance on the server (refreshing only when told) and a patched client."""
    ls = logos_shift.init(
        api_key=server.ingest_key,
        server_url=server.url,
        refresh_seconds=3600,
        spool_dir=str(tmp_path / "spool"),
        state_dir=str(tmp_path / "state"),
        flush_interval=0.1,
    )
    logos_shift.patch_openai()
    client = openai.OpenAI(base_url=fake_provider.openai_base_url, api_key="k", max_retries=0)
    try:
        yield ls, client
    finally:
        logos_shift.unpatch_all()
        client.close()
        ls.shutdown(10)


def _users_on_variant(ls: Any, client: openai.OpenAI, model: str, rate: bool = False) -> float:
    """Each of USERS users makes one call; the share answered by ``model``."""
    hits = 0
    for i in range(USERS):
        with logos_shift.context(dataset="support", user_id=f"user-{i}"):
            resp = client.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": f"question {i}"}]
            )
        hits += resp.model == model
        if rate:
            ls.provide_feedback(resp.id, "success")
    if rate:
        assert ls.flush(30)
    return hits / USERS


def _decided_share(ls: Any) -> float:
    """The share of USERS the client's router would send to the variant (no call made)."""
    picks = [ls.router.decide("support", "gpt-4o", {"user_id": f"user-{i}"}) for i in range(USERS)]
    return sum(1 for p in picks if p is not None and p.is_variant) / USERS


def test_patched_clients_follow_each_stage_promotion_and_rollback(
    server: Server, fake_provider: FakeProvider, app_client: tuple[Any, openai.OpenAI]
) -> None:
    """10 % then 50 % of users reach the fine-tuned model, then all, then none.

    The stages advance on the feedback of the patched clients' own calls.  After each
    transition the clients keep the old split until their next refresh, and one
    refresh is enough to apply the new one.  The calls made at the old share right
    after an advance fall in the policy's ``srm_grace_s`` and do not pause the
    rollout for a sample-ratio mismatch.
    """
    ls, client = app_client
    seed = [call(f"seed {i}", f"Echo: seed {i}") for i in range(40)]
    server.ingest(seed + [feedback(c["id"], "success") for c in seed])
    fake_provider.finetune_schedule(seconds_per_phase=0)
    body = {"dataset": "support", "base_model": "gpt-4o-mini", "policy": POLICY,
            "backend_url": fake_provider.openai_base_url, "backend_api_key": "k"}  # fmt: skip
    assert server.post("/v1/finetune", body).status_code == 202
    assert server.service.wait_idle(30)
    model = server.get("/v1/routes/support/rollout").json()["state"]["variant_model"]
    assert model.startswith("ft:gpt-4o-mini")

    ls.router.refresh_now()
    share = _users_on_variant(ls, client, model, rate=True)
    assert 0.06 <= share <= 0.14, share
    d = server.post("/v1/routes/support/rollout/evaluate").json()
    assert (d["action"], d["state"]["stage_index"]) == ("advance", 1), d

    assert _decided_share(ls) == share  # not refreshed yet: the same users, the same split
    assert _users_on_variant(ls, client, model, rate=True) == share
    ls.router.refresh_now()
    share50 = _users_on_variant(ls, client, model, rate=True)
    assert 0.44 <= share50 <= 0.56, share50

    d = server.post("/v1/routes/support/rollout/evaluate").json()
    assert d["action"] == "promote", (d["reasons"], d["numbers"])
    assert _users_on_variant(ls, client, model) == share50
    ls.router.refresh_now()
    assert _users_on_variant(ls, client, model) == 1.0

    assert server.post("/v1/routes/support/rollout/rollback").json()["action"] == "rollback"
    assert _users_on_variant(ls, client, model) == 1.0
    ls.router.refresh_now()
    assert _users_on_variant(ls, client, model) == 0.0
