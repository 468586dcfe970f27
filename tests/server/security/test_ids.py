"""Record ids are per project: the same id in two projects is two records, and no answer
tells one project whether an id exists in another."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.server.support import Api


def test_the_same_call_id_in_two_projects_is_two_calls(
    api_for: Callable[[str | None], Api], keys: Any, call_factory: Any
) -> None:
    """Project 'other' may use an id project 'acme' used first; each sees its own call."""
    acme, other = api_for(keys.ingest), api_for(keys.other_admin)
    call = call_factory(n=1)
    assert acme.ingest([call]).json()["results"][0]["status"] == "ok"
    theirs = {**call_factory(n=2), "id": call["id"]}
    assert other.ingest([theirs]).json()["results"][0]["status"] == "ok"
    assert other.ingest([theirs]).json()["results"][0]["status"] == "duplicate"
    mine = api_for(keys.admin).get("/v1/datasets/support/calls").json()["calls"]
    assert [c["record"]["output"] for c in mine] == [call["output"]]
    seen = other.get("/v1/datasets/support/calls").json()["calls"]
    assert [c["record"]["output"] for c in seen] == [theirs["output"]]


def test_answers_are_the_same_whether_or_not_another_project_has_the_id(
    api_for: Callable[[str | None], Api], keys: Any, call_factory: Any, feedback_factory: Any
) -> None:
    """Feedback on, or reusing, another project's ids is answered exactly like fresh ids."""
    acme, other = api_for(keys.ingest), api_for(keys.other_admin)
    call = call_factory(n=1)
    fb = feedback_factory(call["id"])
    acme.ingest([call, fb])

    def answers(target: str, fid: str) -> list[Any]:
        batch = other.ingest([feedback_factory(target, id=fid)]).json()["results"]
        direct = other.post("/v1/feedback", json={"target": target, "outcome": "success"})
        return [[r["status"] for r in batch], direct.status_code, direct.json()["call_id"]]

    taken = answers(call["id"], fb["id"])
    fresh = answers("never-used-target", "never-used-feedback-id")
    # 202: feedback whose call is not (yet) in this project waits as pending feedback.
    assert taken == fresh == [["ok"], 202, None]
    acme_calls = api_for(keys.admin).get("/v1/datasets/support/calls").json()["calls"]
    assert acme_calls[0]["feedback"]["count"] == 1
