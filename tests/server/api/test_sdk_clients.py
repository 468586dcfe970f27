"""End to end: patched openai and anthropic clients → fake provider → pipeline → server."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import anthropic
import openai
import requests

import logos_shift
from logos_shift.server import RunningServer
from logos_shift.testing import FakeProvider


def _export(admin: Any, dataset: str) -> list[dict[str, Any]]:
    r = admin.get(
        f"/v1/datasets/{dataset}/export", params={"format": "openai-chat", "outcome": "success"}
    )
    return [json.loads(x) for x in r.text.splitlines()]


def test_patched_sdks_upload_exactly_the_calls_made(
    server: RunningServer, keys: Any, admin: Any, tmp_path: Path, fake_provider: FakeProvider
) -> None:
    """Every SDK call arrives once; feedback by provider id joins; export has the right examples."""
    ls = logos_shift.init(
        api_key=keys.ingest,
        server_url=server.url,
        spool_dir=str(tmp_path / "spool"),
        state_dir=str(tmp_path / "state"),
        flush_interval=0.1,
        max_backoff=0.5,
    )
    logos_shift.patch_openai()
    logos_shift.patch_anthropic()
    oa = openai.OpenAI(base_url=fake_provider.openai_base_url, api_key="test", max_retries=0)
    an = anthropic.Anthropic(
        base_url=fake_provider.anthropic_base_url, api_key="test", max_retries=0
    )
    oa_ids: list[str] = []
    an_ids: list[str] = []
    try:
        with logos_shift.context(dataset="oa", user_id="u1"):
            for i in range(4):
                reply = oa.chat.completions.create(
                    model="gpt-4o", messages=[{"role": "user", "content": f"q{i}"}]
                )
                oa_ids.append(reply.id)
            stream = oa.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": "streamed"}], stream=True
            )
            chunk_ids = {chunk.id for chunk in stream}
            oa_ids.append(chunk_ids.pop())
            fake_provider.script(tool_calls=[{"name": "lookup", "arguments": {"q": "x"}}])
            tools = [{"type": "function", "function": {"name": "lookup",
                      "parameters": {"type": "object"}}}]  # fmt: skip
            reply = oa.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": "use a tool"}], tools=tools
            )
            oa_ids.append(reply.id)
        with logos_shift.context(dataset="claude", user_id="u2"):
            for i in range(2):
                msg = an.messages.create(
                    model="claude-3-5-haiku",
                    max_tokens=50,
                    system="be brief",
                    messages=[{"role": "user", "content": f"c{i}"}],
                )
                an_ids.append(msg.id)
            with an.messages.stream(
                model="claude-3-5-haiku", max_tokens=50, messages=[{"role": "user", "content": "s"}]
            ) as s:
                an_ids.append(s.get_final_message().id)
        for rid in oa_ids[:-1] + an_ids[:-1]:
            ls.provide_feedback(rid, "success", score=1.0)
        ls.provide_feedback(oa_ids[-1], "success", score=0.9)
        ls.provide_feedback(an_ids[-1], "failure", score=0.0)
        assert ls.flush(30)
    finally:
        logos_shift.unpatch_all()
        oa.close()
        an.close()
        ls.shutdown(10)

    for dataset, ids in (("oa", oa_ids), ("claude", an_ids)):
        page = admin.get(f"/v1/datasets/{dataset}/calls", params={"limit": 100}).json()
        got = sorted(c["record"]["response_id"] for c in page["calls"])
        assert got == sorted(ids), dataset
        assert all(c["feedback"]["count"] == 1 for c in page["calls"])
    oa_examples = _export(admin, "oa")
    assert len(oa_examples) == 6
    tool_example = next(e for e in oa_examples if "tools" in e)
    assert tool_example["messages"][-1]["tool_calls"][0]["function"]["name"] == "lookup"
    an_examples = _export(admin, "claude")
    assert len(an_examples) == 2
    assert an_examples[0]["messages"][0] == {"role": "system", "content": "be brief"}
    assert an_examples[0]["messages"][-1]["role"] == "assistant"


ROUTE = {
    "match": {"dataset": "support", "model": "gpt-4o"},
    "control": {"name": "base", "model": "gpt-4o"},
    "variants": [{"name": "ft-1", "model": "ft:gpt-4o-mini:acme::x1", "fallback": True}],
    "rollout": {"variant_pct": 0.5},
}


def test_patched_openai_through_a_server_restart_with_routing(
    app: Any, keys: Any, tmp_path: Path, fake_provider: FakeProvider
) -> None:
    """Routed SDK calls made while the server is down arrive once; stats count every arm."""
    from logos_shift.server._serve import serve_in_thread

    ids: list[str] = []
    with serve_in_thread(app) as first, requests.Session() as admin:
        port, url = first.port, first.url
        admin.headers["Authorization"] = f"Bearer {keys.admin}"
        assert admin.put(f"{url}/v1/routes/support", json=ROUTE, timeout=30).status_code == 201
        ls = logos_shift.init(
            api_key=keys.ingest,
            server_url=url,
            spool_dir=str(tmp_path / "spool"),
            state_dir=str(tmp_path / "state"),
            flush_interval=0.1,
            max_backoff=0.5,
        )
        ls.router.refresh_now()
        logos_shift.patch_openai()
        oa = openai.OpenAI(base_url=fake_provider.openai_base_url, api_key="test", max_retries=0)

        def call(i: int) -> None:
            with logos_shift.context(dataset="support", user_id=f"user-{i}"):
                reply = oa.chat.completions.create(
                    model="gpt-4o", messages=[{"role": "user", "content": f"q{i}"}]
                )
            ids.append(reply.id)
            ls.provide_feedback(reply.id, "success")

        try:
            for i in range(10):
                call(i)
            assert ls.flush(30)
        except BaseException:
            logos_shift.unpatch_all()
            oa.close()
            ls.shutdown(5)
            raise
    try:
        for i in range(10, 30):  # the server is down: spooled, the router keeps its config
            call(i)
        ls.flush(1)
        with serve_in_thread(app, port=port), requests.Session() as admin:
            admin.headers["Authorization"] = f"Bearer {keys.admin}"
            deadline = time.monotonic() + 60
            while True:
                sets = admin.get(f"{url}/v1/datasets", timeout=30).json()["datasets"]
                if sets and (sets[0]["calls"], sets[0]["with_feedback"]) == (30, 30):
                    break
                assert time.monotonic() < deadline, sets
                ls.flush(1)
            page = admin.get(f"{url}/v1/datasets/support/calls?limit=100", timeout=30).json()
            stats = admin.get(f"{url}/v1/routes/support/stats", timeout=30).json()["variants"]
    finally:
        logos_shift.unpatch_all()
        oa.close()
        ls.shutdown(10)
    records = [c["record"] for c in page["calls"]]
    assert sorted(r["response_id"] for r in records) == sorted(ids)
    assert len({r["id"] for r in records}) == 30
    arms = {r["variant"] for r in records}
    assert arms == {"base", "ft-1"}
    ft_model = "ft:gpt-4o-mini:acme::x1"
    for r in records:
        assert r["served_model"] == ("gpt-4o" if r["variant"] == "base" else ft_model)
    assert sum(v["calls"] for v in stats.values()) == 30
    assert all(v["success_rate"] == 1.0 for v in stats.values())
