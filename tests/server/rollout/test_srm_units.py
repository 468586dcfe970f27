"""The sample-ratio check counts assignment units (users), not calls, through the real server.

The router assigns units (``user_id``, or the route's ``assignment.unit`` metadata
key) to arms, so a few heavy users can put most calls on one arm while the users
are split exactly as configured.  Calls with no unit are assigned at random per
call, so each counts as one draw.
"""

from __future__ import annotations

from typing import Any

from logos_shift.server.stats import sequential as _seqstats
from logos_shift.testing import FakeProvider
from tests.server.rollout.support import Server, call, feedback, seed_dataset, start_finetune

# 10 % on the variant at the first stage; the SRM window starts with the stage.
POLICY = {
    "stages": [0.1, 0.5, 1.0],
    "min_per_arm": 20,
    "min_stage_s": 0,
    "margin": 0.1,
    "srm_grace_s": 0,
}


def _start(server: Server, fp: FakeProvider) -> str:
    """Seed a dataset, fine-tune on the fake backend, return the variant's arm name."""
    seed_dataset(server)
    start_finetune(server, fp, POLICY)
    route = server.get("/v1/routes/support").json()
    assert route["rollout"]["variant_pct"] == 0.1
    return str(route["variants"][0]["name"])


def _user_calls(
    arm: str, users: list[str], calls_each: list[int], key: str = "user_id"
) -> list[dict[str, Any]]:
    """Calls (each with success feedback 9 times in 10) of ``users`` on ``arm``."""
    recs: list[dict[str, Any]] = []
    i = 0
    for user, n in zip(users, calls_each, strict=True):
        for _ in range(n):
            meta = {key: user} if user else {}
            c = call(f"q{i}", "a", route="support", variant=arm, metadata=meta)
            recs += [c, feedback(c["id"], "success" if i % 10 else "failure")]
            i += 1
    return recs


def test_heavy_users_on_the_variant_do_not_pause(
    server: Server, fake_provider: FakeProvider
) -> None:
    """Users split 20 / 180 at a 10 % share: no pause, though 70 % of calls hit the variant."""
    variant = _start(server, fake_provider)
    # Two heavy users make 200 calls each on the variant; everyone else calls once.
    v_users = [f"v{i}" for i in range(20)]
    c_users = [f"c{i}" for i in range(180)]
    recs = _user_calls(variant, v_users, [200, 200] + [1] * 18)
    recs += _user_calls("control", c_users, [1] * 180)
    server.ingest(recs)
    # Counted in calls this is a glaring mismatch (418 vs 180 at 10 %).
    assert _seqstats.srm_p_value(418, 180, 0.1) < 1e-100
    d = server.post("/v1/routes/support/rollout/evaluate").json()
    assert d["action"] == "advance", d
    srm = d["numbers"]["srm"]
    assert (srm["counted"], srm["variant"], srm["control"]) == ("units", 20, 180)
    assert srm["calls"] == {"variant": 418, "control": 180}
    assert d["numbers"]["srm_p"] > 0.5
    # The next stage's check starts afresh: nothing counted before it began.
    window = server.get("/v1/routes/support/rollout").json()["srm_window"]
    assert window["units"] == window["calls"] == {"variant": 0, "control": 0}
    assert server.get("/v1/routes/support").json()["rollout"]["variant_pct"] == 0.5


def test_variant_with_three_times_its_share_of_users_pauses(
    server: Server, fake_provider: FakeProvider
) -> None:
    """60 of 200 users on a 10 % variant pauses, though the calls split exactly 10 / 90."""
    variant = _start(server, fake_provider)
    v_users = [f"v{i}" for i in range(60)]
    c_users = [f"c{i}" for i in range(140)]
    # Control's users call more: 540 control calls against the variant's 60.
    recs = _user_calls(variant, v_users, [1] * 60)
    recs += _user_calls("control", c_users, [4] * 120 + [3] * 20)
    server.ingest(recs)
    assert _seqstats.srm_p_value(60, 540, 0.1) == 1.0
    window = server.get("/v1/routes/support/rollout").json()["srm_window"]
    assert window["units"] == {"variant": 60, "control": 140}
    assert window["calls"] == {"variant": 60, "control": 540}
    d = server.post("/v1/routes/support/rollout/evaluate").json()
    assert d["action"] == "pause", d
    assert d["reasons"][0].startswith("sample-ratio mismatch: 60 variant vs 140 control units")
    assert d["numbers"]["srm"]["calls"] == {"variant": 60, "control": 540}
    status = server.get("/v1/routes/support/rollout").json()
    assert status["state"]["status"] == "paused"
    # Paused in place: the clients keep the stage's share.
    assert server.get("/v1/routes/support").json()["rollout"]["variant_pct"] == 0.1


def test_calls_without_a_unit_count_one_each(server: Server, fake_provider: FakeProvider) -> None:
    """Unit-less calls are per-call random draws: they add to the distinct units per arm."""
    variant = _start(server, fake_provider)
    # 5 variant users (50 calls each) + 25 unit-less calls vs 45 users + 225 unit-less calls.
    recs = _user_calls(variant, [f"v{i}" for i in range(5)] + [""] * 25, [50] * 5 + [1] * 25)
    recs += _user_calls("control", [f"c{i}" for i in range(45)] + [""] * 225, [1] * 270)
    server.ingest(recs)
    d = server.post("/v1/routes/support/rollout/evaluate").json()
    srm = d["numbers"]["srm"]
    assert (srm["counted"], srm["variant"], srm["control"]) == ("units", 30, 270)
    assert srm["calls"] == {"variant": 275, "control": 270}
    assert d["action"] == "advance", d


def test_the_routes_unit_key_is_used(server: Server, fake_provider: FakeProvider) -> None:
    """With ``assignment.unit = account`` the accounts are counted, and user_id is ignored."""
    variant = _start(server, fake_provider)
    route = server.get("/v1/routes/support").json()
    route["assignment"]["unit"] = "account"
    assert server.http.put(
        server.url + "/v1/routes/support",
        json=route,
        headers={"Authorization": f"Bearer {server.admin}"},
    ).status_code in (200, 201)
    # One account per arm side has a heavy user; user_id is unique per call (it would
    # count 300 vs 180 "users", a mismatch) but the route assigns accounts: 20 vs 180.
    recs = _user_calls(variant, [f"a{i}" for i in range(20)], [150, 150] + [0] * 18, "account")
    recs += _user_calls(variant, [f"a{i}" for i in range(2, 20)], [1] * 18, "account")
    recs += _user_calls("control", [f"b{i}" for i in range(180)], [1] * 180, "account")
    for rec in recs:
        if rec.get("type") == "call":
            rec["metadata"]["user_id"] = rec["id"]
    server.ingest(recs)
    d = server.post("/v1/routes/support/rollout/evaluate").json()
    srm = d["numbers"]["srm"]
    assert (srm["counted"], srm["variant"], srm["control"]) == ("units", 20, 180)
    assert d["action"] == "advance", d


def test_units_are_read_from_the_record_at_ingest(
    server: Server, fake_provider: FakeProvider
) -> None:
    """Units are taken from each record as it is ingested: values a database's JSON parser
    refuses (an escaped NUL) or that are not text still count as distinct units."""
    variant = _start(server, fake_provider)
    recs = _user_calls(variant, [f"v\x00{i}" for i in range(20)], [1] * 20)
    recs += _user_calls("control", [f"c{i}" for i in range(170)], [1] * 170)
    for i in range(10):  # numeric units: 10 more control units, one of them twice
        c = call(f"n{i}", "a", route="support", variant="control", metadata={"user_id": i // 1})
        recs += [c, feedback(c["id"], "success")]
    c = call("n-again", "a", route="support", variant="control", metadata={"user_id": 0})
    recs += [c, feedback(c["id"], "success")]
    server.ingest(recs)
    d = server.post("/v1/routes/support/rollout/evaluate").json()
    srm = d["numbers"]["srm"]
    assert (srm["counted"], srm["variant"], srm["control"]) == ("units", 20, 180)
    assert srm["calls"] == {"variant": 20, "control": 181}
    assert d["action"] == "advance", d
