"""The CLI views of the data against a real server: datasets, calls, call, stats, feedback
pending — human tables that fit the terminal, and --json."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests

import logos_shift
from logos_shift.cli import main
from tests.cli.conftest import Live


def _record(i: int, **fields: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "schema": 1, "type": "call", "id": f"call-{i:03d}",
        "ts": f"2026-11-23T21:00:{i:02d}.000Z", "dataset": "support",
        "source": "openai.chat.completions",
        "input": {"model": "gpt-4o", "messages": [{"role": "user", "content": f"q{i} " * 40}]},
        "output": {"choices": [{"message": {"role": "assistant", "content": f"a{i}"}}]},
        "requested_model": "gpt-4o", "served_model": "gpt-4o", "provider": "openai",
        "response_id": f"chatcmpl-{i}", "latency_ms": 100.0 + i,
        "usage": {"input_tokens": 10, "output_tokens": 5},
    }  # fmt: skip
    rec.update(fields)
    return rec


def _ingest(live: Live, records: list[dict[str, Any]]) -> None:
    r = requests.post(
        f"{live.url}/v1/ingest",
        json=records,
        headers={"Authorization": f"Bearer {live.ingest}"},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    assert r.json()["errors"] == 0, r.text


def _feedback(target: str, outcome: str, n: int) -> dict[str, Any]:
    return {"schema": 1, "type": "feedback", "id": f"fb-{n}", "ts": "2026-11-23T22:00:00.000Z",
            "target": target, "outcome": outcome, "score": None}  # fmt: skip


@pytest.fixture
def seeded(live: Live) -> Live:
    """Six calls of dataset support (two routed to a variant), feedback on three."""
    calls = [_record(i) for i in range(4)]
    calls += [_record(i, route="support", variant="ft-1", served_model="ft:mini") for i in (4, 5)]
    calls[0]["route"] = calls[1]["route"] = "support"
    calls[0]["variant"] = calls[1]["variant"] = "control"
    _ingest(live, calls)
    _ingest(
        live,
        [_feedback("call-000", "success", 0), _feedback("chatcmpl-4", "failure", 1),
         _feedback("call-005", "success", 2)],
    )  # fmt: skip
    return live


def test_datasets_lists_counts_and_json(
    seeded: Live, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`datasets` shows each dataset's calls and feedback; --json the server's answer."""
    assert main(["datasets", *seeded.args()]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:4] == ["DATASET", "CALLS", "WITH", "FEEDBACK"]
    assert out[1].split()[:3] == ["support", "6", "3"]
    assert main(["datasets", "--json", *seeded.args()]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["datasets"][0]["name"] == "support"
    assert doc["pending_feedback"] == 0


def test_calls_newest_first_with_filters_and_a_width(
    seeded: Live, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`calls DATASET` lists newest first; --outcome/--variant/--model filter; --limit cuts;
    every line fits $COLUMNS; --json carries the full records."""
    monkeypatch.setenv("COLUMNS", "72")
    assert main(["calls", "support", *seeded.args()]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert max(len(line) for line in lines) <= 72
    assert [line.split()[0] for line in lines[1:]] == [f"call-{i:03d}" for i in range(5, -1, -1)]
    assert lines[1].rstrip().endswith("…")  # the long input is cut to fit
    assert main(["calls", "support", "--outcome", "success", *seeded.args()]) == 0
    rows = capsys.readouterr().out.splitlines()[1:]
    assert [r.split()[0] for r in rows] == ["call-005", "call-000"]
    assert main(["calls", "support", "--variant", "ft-1", "--oldest", *seeded.args()]) == 0
    assert [r.split()[0] for r in capsys.readouterr().out.splitlines()[1:]] == [
        "call-004",
        "call-005",
    ]
    assert main(["calls", "support", "--model", "ft:mini", "--limit", "1", *seeded.args()]) == 0
    out, err = capsys.readouterr()
    assert len(out.splitlines()) == 2
    assert "more calls match" in err
    assert main(["calls", "support", "--outcome", "none", "--json", *seeded.args()]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert {c["record"]["id"] for c in doc["calls"]} == {"call-001", "call-002", "call-003"}
    assert main(["calls", "nope", *seeded.args()]) == 0
    assert "no calls in dataset 'nope' match" in capsys.readouterr().err


def test_a_piped_table_is_not_cut(seeded: Live, capsys: pytest.CaptureFixture[str]) -> None:
    """Without a terminal or $COLUMNS the table keeps every character (grep sees it all)."""
    assert main(["calls", "support", "--limit", "1", *seeded.args()]) == 0
    line = capsys.readouterr().out.splitlines()[1]
    assert "q5 " * 40 in line + " "


def test_call_by_id_and_by_response_id(seeded: Live, capsys: pytest.CaptureFixture[str]) -> None:
    """`call ID` shows the record, the route and every feedback event; the provider's
    response id works too; an unknown id is a 404 message, exit 1."""
    assert main(["call", "call-004", *seeded.args()]) == 0
    out = capsys.readouterr().out
    assert "id:          call-004" in out
    assert "model:       gpt-4o -> ft:mini" in out
    assert "route:       support / ft-1" in out
    assert "feedback:    1" in out
    assert "failure" in out
    assert '"content": "a4"' in out
    assert main(["call", "chatcmpl-4", "--json", *seeded.args()]) == 0
    assert json.loads(capsys.readouterr().out)["record"]["id"] == "call-004"
    assert main(["call", "call-999", *seeded.args()]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: HTTP 404: no call 'call-999' in this project")


def test_stats_per_arm_and_an_unknown_route(
    seeded: Live, capsys: pytest.CaptureFixture[str]
) -> None:
    """`stats ROUTE` prints one row per arm; a mistyped route is a 404 naming the known ones."""
    assert main(["stats", "support", *seeded.args()]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["ARM", "CALLS", "FEEDBACK"]
    arms = {line.split()[0]: line.split() for line in lines[1:]}
    assert arms["control"][1:3] == ["2", "1"]
    assert arms["ft-1"][1:4] == ["2", "2", "50.0%"]
    assert main(["stats", "support", "--json", *seeded.args()]) == 0
    assert json.loads(capsys.readouterr().out)["variants"]["ft-1"]["calls"] == 2
    assert main(["stats", "suport", *seeded.args()]) == 1
    assert "no route 'suport' in this project" in capsys.readouterr().err


def test_feedback_for_an_unknown_id_shows_up_as_pending(
    live: Live, capsys: pytest.CaptureFixture[str], tmp_path: Any
) -> None:
    """Feedback with a mistyped id, sent by a real client, is listed by `feedback pending`
    and counted under `datasets`; once a call with that id arrives, nothing is pending."""
    ls = logos_shift.LogosShift(server_url=live.url, api_key=live.ingest, wait_for_config=0)

    @ls(dataset="support")
    def answer(q: str) -> dict[str, str]:
        return {"a": q}

    answer("hi")
    ls.provide_feedback("call-typo", "success")
    assert ls.flush(timeout=10)
    assert main(["feedback", "pending", *live.args()]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[1].split()[:3] == ["call-typo", "success", "0"]
    assert "1 feedback event(s) name a call the server has not received" in err
    assert main(["datasets", *live.args()]) == 0
    assert "1 feedback event(s) wait for a call that has not arrived" in capsys.readouterr().err
    _ingest(live, [_record(1, id="call-typo")])
    assert main(["feedback", "pending", "--json", *live.args()]) == 0
    assert json.loads(capsys.readouterr().out) == {"count": 0, "feedback": []}
    assert ls.shutdown()


def test_a_missing_or_wrong_key_says_how_to_make_one(
    live: Live, capsys: pytest.CaptureFixture[str]
) -> None:
    """A 401 names the flag, the variable and the command that creates an admin key."""
    assert main(["datasets", "--server", live.url, "--api-key", "lsk_wrong"]) == 1
    err = capsys.readouterr().err
    assert "HTTP 401: invalid or revoked API key" in err
    assert "logos-shift keys create --project NAME --scope admin" in err
    assert main(["datasets", "--server", live.url, "--api-key", live.ingest]) == 1
    assert "needs an admin key" in capsys.readouterr().err
