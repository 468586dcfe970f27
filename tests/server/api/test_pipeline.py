"""End to end over real sockets: the core client's pipeline uploading to the real server.

The patched-SDK half of the loop (openai/anthropic → fake provider → pipeline
→ server) lives in test_e2e_sdk.py; these tests use the ``@ls`` decorator,
which goes through the same pipeline, spool and HTTP sink.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from logos_shift import LogosShift
from logos_shift.server import Database, RunningServer
from logos_shift.server._serve import serve_in_thread


def _client(url: str, key: str, tmp_path: Path, **settings: Any) -> LogosShift:
    return LogosShift(
        api_key=key,
        server_url=url,
        spool_dir=str(tmp_path / "spool"),
        flush_interval=0.1,
        max_backoff=0.5,
        **settings,
    )


def _calls(admin: Any, dataset: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 1000}
        if cursor:
            params["cursor"] = cursor
        page = admin.get(f"/v1/datasets/{dataset}/calls", params=params).json()
        out.extend(page["calls"])
        cursor = page["next_cursor"]
        if cursor is None:
            return out


def _wait_for(predicate: Callable[[], bool], what: str, flush: Callable[[], Any]) -> None:
    deadline = time.monotonic() + 60
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        flush()
        time.sleep(0.05)


def test_decorated_calls_and_feedback_reach_the_server(
    server: RunningServer, keys: Any, admin: Any, tmp_path: Path
) -> None:
    """Every captured call arrives exactly once with its feedback joined; stats and export agree."""
    ls = _client(server.url, keys.ingest, tmp_path)
    try:

        @ls(dataset="e2e")
        def add(x: int, y: int) -> dict[str, int]:
            return {"sum": x + y}

        ids = [add(i, 1)["logos_shift_id"] for i in range(50)]
        ls.provide_feedback(ids[0], "success", score=1.0)
        ls.provide_feedback(ids[1], "failure", score=0.0)
        assert ls.flush(30)
    finally:
        ls.shutdown(10)
    calls = _calls(admin, "e2e")
    assert sorted(c["record"]["id"] for c in calls) == sorted(ids)
    by_id = {c["record"]["id"]: c for c in calls}
    assert by_id[ids[0]]["feedback"]["outcome"] == "success"
    assert by_id[ids[1]]["feedback"]["outcome"] == "failure"
    assert by_id[ids[7]]["record"]["input"] == {"x": 7, "y": 1}
    assert by_id[ids[7]]["record"]["output"]["sum"] == 8
    datasets = admin.get("/v1/datasets").json()["datasets"]
    assert datasets == [
        {
            "name": "e2e",
            "calls": 50,
            "with_feedback": 2,
            "first_ts": datasets[0]["first_ts"],
            "last_ts": datasets[0]["last_ts"],
        }
    ]
    raw = admin.get("/v1/datasets/e2e/export", params={"outcome": "success"}).text.splitlines()
    assert [json.loads(x)["id"] for x in raw] == [ids[0]]


@pytest.mark.slow
def test_server_restart_loses_and_duplicates_nothing(
    app: Any, keys: Any, db: Database, tmp_path: Path
) -> None:
    """Calls made while the server is down are spooled and delivered once after it restarts."""
    with serve_in_thread(app) as first:
        port, url = first.port, first.url
        ls = _client(url, keys.ingest, tmp_path)

        @ls(dataset="outage")
        def echo(i: int) -> dict[str, int]:
            return {"i": i}

        ids = [echo(i)["logos_shift_id"] for i in range(10)]
        assert ls.flush(30)
    try:
        # Server down: these go to the disk spool.
        ids += [echo(i)["logos_shift_id"] for i in range(10, 40)]
        ls.provide_feedback(ids[20], "success")
        ls.flush(1)
        down = ls.stats()
        assert down["spooled"] + down["pending"] > 0, down
        with serve_in_thread(app, port=port), requests.Session() as s:
            s.headers["Authorization"] = f"Bearer {keys.admin}"

            def counts() -> tuple[int, int]:
                r = s.get(f"{url}/v1/datasets", timeout=30).json()["datasets"]
                return (r[0]["calls"], r[0]["with_feedback"]) if r else (0, 0)

            _wait_for(lambda: counts() == (40, 1), "spooled records", lambda: ls.flush(1))
            ls.flush(5)
            page = s.get(f"{url}/v1/datasets/outage/calls?limit=1000", timeout=30).json()
    finally:
        ls.shutdown(10)
    got = [c["record"]["id"] for c in page["calls"]]
    assert sorted(got) == sorted(ids)
    assert len(got) == len(set(got)) == 40
    joined = {c["record"]["id"]: c["feedback"]["outcome"] for c in page["calls"]}
    assert joined[ids[20]] == "success"


_UPLOADER = """
import json, sys
from logos_shift import LogosShift
url, key, spool, n, tag = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
ls = LogosShift(api_key=key, server_url=url, spool_dir=spool, flush_interval=0.05, batch_size=50)

@ls(dataset="multi")
def work(i):
    return {"tag": tag, "i": i, "pad": "x" * 500}

ids = [work(i)["logos_shift_id"] for i in range(n)]
ok = ls.shutdown(60)
print(json.dumps({"ids": ids, "ok": ok, "stats": ls.stats()}))
"""


@pytest.mark.slow
def test_eight_processes_uploading_at_once(
    server: RunningServer, keys: Any, admin: Any, tmp_path: Path
) -> None:
    """Eight client processes upload concurrently; every record arrives exactly once,
    uploaded at once or, when the server answered too slowly for the exit's budget,
    spooled and then delivered by ``logos-shift spool replay``."""
    n = 300
    procs = []
    for i in range(8):
        argv = [sys.executable, "-c", _UPLOADER, server.url, keys.ingest]
        argv += [str(tmp_path / f"spool{i}"), str(n), f"p{i}"]
        procs.append(
            subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        )
    expected: list[str] = []
    for proc in procs:
        out, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err
        result = json.loads(out.strip().splitlines()[-1])
        assert result["ok"], result["stats"]
        expected.extend(result["ids"])
        st = result["stats"]
        assert st["captured"] == st["sent"] + st["spooled"] == n, st
        if st["spooled"]:
            replay = [sys.executable, "-m", "logos_shift", "spool", "replay", "--spool-dir",
                      str(tmp_path / f"spool{len(expected) // n - 1}"),
                      "--server-url", server.url, "--api-key", keys.ingest]  # fmt: skip
            done = subprocess.run(replay, capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, done.stderr
    got = [c["record"]["id"] for c in _calls(admin, "multi")]
    assert len(got) == len(set(got)) == 8 * n
    assert sorted(got) == sorted(expected)


def _route(pct: float, kill: bool = False) -> dict[str, Any]:
    return {
        "match": {"dataset": "search"},
        "control": {"name": "v1", "model": "v1"},
        "variants": [{"name": "v2", "model": "v2", "callable": "v2", "fallback": True}],
        "rollout": {"variant_pct": pct},
        "kill_switch": kill,
    }


def test_route_changes_reach_the_client_in_one_refresh_and_stats_agree(
    server: RunningServer, keys: Any, admin: Any, tmp_path: Path
) -> None:
    """A route PUT through the API steers the client after one refresh; stats count each arm."""
    assert admin.put("/v1/routes/search", json=_route(0.0)).status_code == 201
    ls = _client(server.url, keys.ingest, tmp_path, state_dir=str(tmp_path / "state"))
    try:

        @ls(dataset="search", variants={"v2": lambda q: f"v2:{q}"})
        def search(q: str) -> str:
            return f"v1:{q}"

        def run(n: int) -> list[str]:
            return [search("q", logos_shift_metadata={"user_id": f"u{i}"}) for i in range(n)]

        ls.router.refresh_now()
        assert set(run(10)) == {"v1:q"}
        admin.put("/v1/routes/search", json=_route(1.0))
        ls.router.refresh_now()
        assert set(run(20)) == {"v2:q"}
        admin.put("/v1/routes/search", json=_route(1.0, kill=True))
        ls.router.refresh_now()
        assert set(run(5)) == {"v1:q"}
        assert ls.flush(30)
    finally:
        ls.shutdown(10)
    variants = admin.get("/v1/routes/search/stats").json()["variants"]
    assert {name: v["calls"] for name, v in variants.items()} == {"v1": 15, "v2": 20}
    assert variants["v2"]["error_rate"] == 0.0
