"""End-to-end tests of fine-tune + rollout through the real server, fake provider and SQLite."""

from __future__ import annotations

import json
import socket
import time
from typing import Any

import pytest

from logos_shift.testing import FakeProvider
from tests.server.rollout.support import Server, call, feedback, seed_dataset, start_finetune

POLICY = {"stages": [0.1, 0.5, 1.0], "min_per_arm": 20, "min_stage_s": 0, "margin": 0.1}


def _start(server: Server, fp: FakeProvider, **extra: Any) -> dict[str, Any]:
    return start_finetune(server, fp, extra.pop("policy", POLICY), **extra)


def _traffic(
    server: Server,
    variant: str,
    n: int,
    success: float,
    control_ok: float = 0.9,
    n_control: int = 0,
) -> None:
    recs = []
    for arm, rate, count in ((variant, success, n), ("control", control_ok, n_control or n)):
        for i in range(count):
            c = call(f"q{i}", "a", route="support", variant=arm)
            recs += [c, feedback(c["id"], "success" if i < rate * count else "failure")]
    server.ingest(recs)


def _config_route(server: Server) -> dict[str, Any]:
    r = server.get("/v1/config", key=server.ingest_key)
    assert r.status_code == 200
    return dict(r.json()["routes"]["support"])


def test_finetune_starts_canary_and_serves_config(
    server: Server, fake_provider: FakeProvider
) -> None:
    """A successful job creates the route's variant at the first stage and lists every event."""
    seed_dataset(server)
    started = _start(server, fake_provider)
    assert started["dataset"]["train"] >= 10
    status = server.get("/v1/routes/support/rollout").json()
    assert status["state"]["status"] == "canary"
    model = status["state"]["variant_model"]
    assert model in fake_provider.fine_tuned_models()
    actions = [e["action"] for e in status["events"]]
    assert actions[0] == "training_started"
    assert "job_status" in actions
    assert actions[-1] == "start_canary"
    route = _config_route(server)
    assert route["variants"][0]["model"] == model
    assert route["rollout"]["variant_pct"] == 0.1
    assert route["control"]["model"] == "gpt-4o"


def test_rollout_advances_and_promotes(server: Server, fake_provider: FakeProvider) -> None:
    """Equal-quality evidence advances stage by stage and promotion sets the variant to 100 %."""
    seed_dataset(server)
    _start(server, fake_provider)
    variant = _config_route(server)["variants"][0]["name"]
    assert server.post("/v1/routes/support/rollout/evaluate").json()["action"] == "hold"
    _traffic(server, variant, 30, 0.9, n_control=270)
    d = server.post("/v1/routes/support/rollout/evaluate").json()
    assert d["action"] == "advance", d
    assert _config_route(server)["rollout"]["variant_pct"] == 0.5
    _traffic(server, variant, 400, 1.0, control_ok=1.0)
    d = server.post("/v1/routes/support/rollout/evaluate").json()
    assert d["action"] == "promote", d
    assert d["numbers"]["non_inferiority"]["lower"] > -0.1
    assert _config_route(server)["rollout"]["variant_pct"] == 1.0


def test_bad_variant_rolls_back_and_notifies(
    server: Server, fake_provider: FakeProvider, webhook: Any
) -> None:
    """A much worse variant is rolled back: config share 0, buckets re-drawn, webhook retried."""
    seed_dataset(server)
    _start(server, fake_provider, webhook_url=webhook.url)
    route = _config_route(server)
    _traffic(server, route["variants"][0]["name"], 200, 0.4, n_control=1800)
    d = server.post("/v1/routes/support/rollout/evaluate").json()
    assert d["action"] == "rollback"
    assert d["numbers"]["feedback_diff"]["upper"] < -0.1
    after = _config_route(server)
    assert after["rollout"]["variant_pct"] == 0.0
    assert after["assignment"]["bucket_version"] == route["assignment"]["bucket_version"] + 1
    assert server.service.wait_idle(10)
    assert [e["action"] for e in webhook.events][-1] == "rollback"
    assert webhook.attempts == len(webhook.events) + 1
    events = server.get("/v1/routes/support/rollout").json()["events"]
    assert events[-1]["reasons"][0].startswith("feedback success worse")


def test_manual_actions_over_http(server: Server, fake_provider: FakeProvider) -> None:
    """pause / resume / promote / rollback apply; an inapplicable action is a 409."""
    seed_dataset(server)
    _start(server, fake_provider)
    assert server.post("/v1/routes/support/rollout/pause").json()["state"]["status"] == "paused"
    assert server.post("/v1/routes/support/rollout/evaluate").json()["action"] == "hold"
    assert server.post("/v1/routes/support/rollout/resume").json()["state"]["status"] == "canary"
    r = server.post("/v1/routes/support/rollout/resume")
    assert r.status_code == 409
    assert "cannot resume" in r.json()["message"]
    assert server.post("/v1/routes/support/rollout/promote").json()["action"] == "promote"
    assert _config_route(server)["rollout"]["variant_pct"] == 1.0
    assert server.post("/v1/routes/support/rollout/rollback").json()["action"] == "rollback"
    assert _config_route(server)["rollout"]["variant_pct"] == 0.0
    assert server.post("/v1/routes/nothing/rollout/pause").status_code == 404
    assert server.post("/v1/routes/support/rollout/explode").status_code == 422


def test_small_dataset_is_rejected_without_a_job(
    server: Server, fake_provider: FakeProvider
) -> None:
    """Too few examples gives a 422 naming the counts; no file or job reaches the provider."""
    seed_dataset(server, n=5)
    r = server.post(
        "/v1/finetune",
        {"dataset": "support", "base_model": "m"},
    )
    assert r.status_code == 422
    assert r.json()["error"] == "invalid_dataset"
    assert "only" in r.json()["message"]
    assert not [q for q in fake_provider.requests if "fine_tuning" in q.path or "files" in q.path]
    assert server.get("/v1/routes/support/rollout").status_code == 404


def test_unreachable_backend_leaves_route_on_control(server: Server) -> None:
    """A backend nobody listens on gives a 502 saying why; the route gets no variant."""
    seed_dataset(server)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = server.post(
        "/v1/finetune",
        {
            "dataset": "support",
            "base_model": "m",
            "backend_url": f"http://127.0.0.1:{port}/v1",
            "backend_api_key": "k",
        },
    )
    assert r.status_code == 502
    assert "route stays on control" in r.json()["message"]
    status = server.get("/v1/routes/support/rollout").json()
    assert status["state"]["status"] == "failed"
    assert "cannot reach" in status["state"]["reason"]
    assert "support" not in server.get("/v1/config", key=server.ingest_key).json()["routes"]


def test_failed_job_leaves_route_on_control(server: Server, fake_provider: FakeProvider) -> None:
    """A job the provider fails ends 'failed' with its error; no route is changed."""
    seed_dataset(server)
    fake_provider.finetune_schedule(
        seconds_per_phase=0, outcome="failed", error={"code": "oom", "message": "out of memory"}
    )
    r = server.post(
        "/v1/finetune",
        {"dataset": "support", "base_model": "m"},
    )
    assert r.status_code == 202
    assert server.service.wait_idle(30)
    status = server.get("/v1/routes/support/rollout").json()
    assert status["state"]["status"] == "failed"
    assert "oom: out of memory" in status["state"]["reason"]
    assert "support" not in server.get("/v1/config", key=server.ingest_key).json()["routes"]


def test_second_finetune_while_active_conflicts(
    server: Server, fake_provider: FakeProvider
) -> None:
    """Starting a fine-tune on a route whose rollout is in progress is a 409."""
    seed_dataset(server)
    _start(server, fake_provider)
    r = server.post(
        "/v1/finetune",
        {"dataset": "support", "base_model": "m"},
    )
    assert r.status_code == 409


def test_offline_eval_gates_the_canary(server: Server, fake_provider: FakeProvider) -> None:
    """With offline_eval on, the fine-tuned model answers the test split and the judge gates it."""
    seed_dataset(server, n=80)
    _start(server, fake_provider, policy={**POLICY, "offline_eval": True, "offline_eval_gate": 0.9})
    status = server.get("/v1/routes/support/rollout").json()
    actions = [e["action"] for e in status["events"]]
    assert "start_eval" in actions
    assert status["state"]["status"] == "canary", status["events"][-1]
    assert status["events"][-1]["numbers"]["rate"] == 1.0


def test_fallbacks_count_as_variant_errors(server: Server, fake_provider: FakeProvider) -> None:
    """Variant calls that fell back are variant errors; their feedback is not credited to it."""
    seed_dataset(server)
    _start(server, fake_provider)
    variant = _config_route(server)["variants"][0]["name"]
    recs = []
    for i in range(100):
        c = call(f"q{i}", "a", route="support", variant=variant, fallback=i < 30)
        recs += [c, feedback(c["id"], "success")]
    for i in range(900):
        c = call(f"c{i}", "a", route="support", variant="control")
        recs += [c, feedback(c["id"], "success")]
    server.ingest(recs)
    ev = server.get("/v1/routes/support/rollout").json()["evidence"]
    assert ev["variant"] == {"calls": 100, "errors": 30, "feedback": 70, "successes": 70.0}
    d = server.post("/v1/routes/support/rollout/evaluate").json()
    assert d["action"] == "rollback"
    assert "error rate (fallbacks included)" in d["reasons"][0]


def test_router_follows_stages_and_rollback(server: Server, fake_provider: FakeProvider) -> None:
    """A client router sends each stage's share of users to the variant and none after rollback."""
    from logos_shift.routing.router import Router

    seed_dataset(server)
    _start(server, fake_provider)
    router = Router(server_url=server.url, api_key=server.ingest_key, refresh_seconds=3600)
    try:

        def share() -> float:
            router.refresh_now()
            picks = [router.decide("support", "gpt-4o", {"user_id": f"u{i}"}) for i in range(4000)]
            return sum(1 for p in picks if p is not None and p.is_variant) / len(picks)

        assert 0.06 < share() < 0.14
        server.post("/v1/routes/support/rollout/promote")
        assert share() == 1.0
        server.post("/v1/routes/support/rollout/rollback")
        assert share() == 0.0
    finally:
        router.close()


def test_job_timeout_leaves_route_on_control(server: Server, fake_provider: FakeProvider) -> None:
    """A job that outlives the service's deadline is cancelled and the rollout fails saying so."""
    seed_dataset(server)
    server.service.job_timeout_s = 0.3
    fake_provider.finetune_schedule(retrieves_per_phase=10_000)
    body = {"dataset": "support", "base_model": "m"}
    assert server.post("/v1/finetune", body).status_code == 202
    assert server.service.wait_idle(30)
    status = server.get("/v1/routes/support/rollout").json()
    assert status["state"]["status"] == "failed"
    assert "did not finish within 0.3s" in status["state"]["reason"]
    assert "support" not in server.get("/v1/config", key=server.ingest_key).json()["routes"]


@pytest.mark.parametrize(
    "loop_timings", [{"INTERVAL_S": "3600", "DEBOUNCE_S": "0.05", "LEASE_S": "10"}]
)
def test_the_loop_decides_after_ingest(server: Server, fake_provider: FakeProvider) -> None:
    """Traffic and feedback alone move the rollout: the server's loop evaluates the route."""
    seed_dataset(server)
    _start(server, fake_provider)
    variant = _config_route(server)["variants"][0]["name"]
    _traffic(server, variant, 200, 0.3, n_control=1800)
    for _ in range(400):
        if server.get("/v1/routes/support/rollout").json()["state"]["status"] == "rolled_back":
            break
        time.sleep(0.05)
    assert server.get("/v1/routes/support/rollout").json()["state"]["status"] == "rolled_back"


def test_bad_requests_are_clear_4xx(server: Server) -> None:
    """An invalid policy or body is a 422 that changes nothing; an ingest key gets 403."""
    r = server.post("/v1/finetune", {"dataset": "d", "base_model": "m", "policy": {"margin": "x"}})
    assert r.status_code == 422
    assert r.json()["error"] == "invalid_policy"
    assert server.post("/v1/finetune", {"dataset": "d"}).status_code == 422
    assert (
        server.post("/v1/finetune", {"dataset": "d", "base_model": "m", "x": 1}).status_code == 422
    )
    r = server.post("/v1/finetune", {"dataset": "d", "base_model": "m"}, key=server.ingest_key)
    assert r.status_code == 403
    assert server.get("/v1/routes/d/rollout", key=server.ingest_key).status_code == 403
    assert server.get("/v1/routes/d/rollout").status_code == 404


def test_rolled_back_failures_are_kept_for_the_next_dataset(
    server: Server, fake_provider: FakeProvider
) -> None:
    """A rollback keeps the variant's failed calls; the next dataset up-weights good answers.

    The variant fails 50 inputs (failure feedback), errors on one and falls back on
    another, and fails 5 inputs nobody answered well.  Control answered the 50 well.
    After the automatic rollback the failures are listed; the next fine-tune's training
    file holds control's answers to those inputs twice, never the variant's bad ones,
    and the response says which failed inputs still lack a good answer.
    """
    seed_dataset(server)
    _start(server, fake_provider)
    variant = _config_route(server)["variants"][0]["name"]
    recs: list[dict[str, Any]] = []
    for i in range(80):
        c = call(f"easy {i}", "fine", route="support", variant=variant)
        recs += [c, feedback(c["id"], "success")]
    for i in range(120):
        c = call(f"hard {i % 50}", "BAD ANSWER", route="support", variant=variant)
        recs += [c, feedback(c["id"], "failure")]
    for i in range(5):
        c = call(f"orphan {i}", "BAD ANSWER", route="support", variant=variant)
        recs += [c, feedback(c["id"], "failure")]
    err = {"type": "APIError", "message": "boom", "status": 500}
    recs.append(call("hard 0", "x", route="support", variant=variant, output=None, error=err))
    recs.append(call("hard 1", "x", route="support", variant=variant, fallback=True))
    for i in range(1800):
        c = call(f"hard {i % 50}", f"Good answer {i % 50}", route="support", variant="control")
        recs += [c, feedback(c["id"], "success" if i < 1620 else "failure")]
    server.ingest(recs)
    d = server.post("/v1/routes/support/rollout/evaluate").json()
    assert d["action"] == "rollback", d
    assert d["numbers"]["kept_failures"] == 127
    assert "kept 127 failed calls" in d["reasons"][-1]
    kept = server.get("/v1/routes/support/rollout/failures").json()
    assert (kept["count"], kept["inputs"], kept["unanswered"]) == (127, 55, 5)
    by_reason: dict[str, int] = {}
    for f in kept["failures"]:
        by_reason[f["reason"]] = by_reason.get(f["reason"], 0) + 1
        assert f["answered"] == (not f["input"]["messages"][-1]["content"].startswith("orphan"))
    assert by_reason == {"failure": 125, "error": 1, "fallback": 1}
    # A second rollback request changes nothing and keeps nothing twice.
    assert server.post("/v1/routes/support/rollout/rollback").status_code == 409
    assert server.get("/v1/routes/support/rollout/failures").json()["count"] == 127
    # Failure feedback arriving after the rollback is kept by the next fine-tune.
    server.ingest([feedback(recs[0]["id"], "failure")])

    started = _start(server, fake_provider)
    counts = started["dataset"]
    assert counts["hard_inputs"] == 56
    assert counts["hard_answered"] == 50
    assert counts["hard_unanswered"] == 6
    assert 30 <= counts["hard_in_train"] <= 50
    assert any("6 of 56 inputs a rolled-back model failed on" in w for w in started["warnings"])
    assert server.get("/v1/routes/support/rollout/failures").json()["count"] == 128
    lines = fake_provider.file_content(started["files"]["train"]).decode().splitlines()
    answers = [json.loads(x)["messages"][-1]["content"] for x in lines]
    assert "BAD ANSWER" not in answers
    good = [a for a in answers if a.startswith("Good answer")]
    assert len(good) == 2 * counts["hard_in_train"]
    assert all(good.count(a) == 2 for a in good)
    assert len(answers) == counts["train"]


def test_malformed_dataset_is_rejected_without_a_job(
    server: Server, fake_provider: FakeProvider
) -> None:
    """Rated calls that cannot become training lines give a 422 listing each problem; no job."""
    recs: list[dict[str, Any]] = []
    for i in range(30):
        bad = {"model": "gpt-4o", "messages": [{"role": "robot", "content": f"beep {i}"}]}
        c = call(f"q{i}", "a", input=bad)
        recs += [c, feedback(c["id"], "success")]
    server.ingest(recs)
    body = {"dataset": "support", "base_model": "m"}
    r = server.post("/v1/finetune", body)
    assert r.status_code == 422, r.text
    err = r.json()
    assert err["error"] == "invalid_dataset"
    assert "only 0 training examples" in err["message"]
    assert "30 invalid" in err["message"]
    assert any("unrecognised role 'robot'" in d for d in err["details"])
    assert not [q for q in fake_provider.requests if "fine_tuning" in q.path or "files" in q.path]
    assert server.get("/v1/routes/support/rollout").status_code == 404
    assert "support" not in server.get("/v1/config", key=server.ingest_key).json()["routes"]


def test_backend_that_never_answers_leaves_route_on_control(server: Server) -> None:
    """A backend that accepts connections but never answers times out: 502 saying so."""
    from logos_shift.server.finetune import backend as _finetune

    seed_dataset(server)
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # connections complete in the backlog; nothing ever reads or answers
    port = silent.getsockname()[1]
    server.service.backend_factory = lambda url, key: _finetune.OpenAICompatibleBackend(
        base_url=url, api_key=key or "k", timeout=0.5, max_retries=0
    )
    try:
        body = {"dataset": "support", "base_model": "m", "backend_api_key": "k",
                "backend_url": f"http://127.0.0.1:{port}/v1"}  # fmt: skip
        r = server.post("/v1/finetune", body)
    finally:
        silent.close()
    assert r.status_code == 502, r.text
    message = r.json()["message"]
    assert "timed out" in message
    assert "route stays on control" in message
    status = server.get("/v1/routes/support/rollout").json()
    assert status["state"]["status"] == "failed"
    assert "timed out" in status["state"]["reason"]
    assert "support" not in server.get("/v1/config", key=server.ingest_key).json()["routes"]
