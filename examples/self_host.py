"""Self-hosting in one script: start a Logos server, create keys, send traffic, read stats.

Runs offline: the server uses a temporary SQLite file, and the "LLM" is the
local fake provider from ``logos_shift.testing``.  The same steps from a shell:

    logos-shift server --database-url sqlite:///logos.db &
    logos-shift keys create --project demo --scope admin
    logos-shift keys create --project demo --scope ingest

Run: ``python examples/self_host.py``
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import openai
import requests

import logos_shift
from logos_shift.server import Database, create_app, create_key, serve_in_thread
from logos_shift.testing import FakeProvider

ROUTE = {
    "match": {"dataset": "support", "model": "gpt-4o"},
    "control": {"name": "base", "model": "gpt-4o"},
    "variants": [{"name": "ft-1", "model": "ft:gpt-4o-mini:demo::x1", "fallback": True}],
    "rollout": {"variant_pct": 0.5},
}


def main() -> None:
    """Start everything, send 20 chat calls with feedback, print what the server saw."""
    workdir = Path(tempfile.mkdtemp(prefix="logos-self-host-"))
    db = Database(f"sqlite:///{workdir / 'logos.db'}")
    app = create_app(db)
    admin_key, _ = create_key(db, "demo", "admin")
    ingest_key, _ = create_key(db, "demo", "ingest")
    print(f"database: {workdir / 'logos.db'}")
    print(f"keys: admin {admin_key[:12]}…  ingest {ingest_key[:12]}…")

    with serve_in_thread(app) as server, FakeProvider() as fake, requests.Session() as admin:
        print(f"server: {server.url}  (OpenAPI at {server.url}/openapi.json)")
        admin.headers["Authorization"] = f"Bearer {admin_key}"
        r = admin.put(f"{server.url}/v1/routes/support", json=ROUTE, timeout=10)
        print(f"route 'support': HTTP {r.status_code}, config version {r.json()['version']}")

        ls = logos_shift.init(
            api_key=ingest_key,
            server_url=server.url,
            spool_dir=str(workdir / "spool"),
            state_dir=str(workdir / "state"),
            flush_interval=0.2,
        )
        # The client polls the config in the background; fetch it now so the
        # very first calls are already routed.
        ls.router.refresh_now()
        logos_shift.patch_openai()  # every openai call is captured from here on
        client = openai.OpenAI(base_url=fake.openai_base_url, api_key="fake")
        try:
            _traffic(ls, client)
            ls.flush(10)
        finally:
            client.close()
            logos_shift.unpatch_openai()
            ls.shutdown(10)

        datasets = admin.get(f"{server.url}/v1/datasets", timeout=10).json()["datasets"]
        for d in datasets:
            print(f"dataset {d['name']}: {d['calls']} calls, {d['with_feedback']} with feedback")
        stats = admin.get(f"{server.url}/v1/routes/support/stats", timeout=10).json()
        for name, v in stats["variants"].items():
            rate = "n/a" if v["success_rate"] is None else f"{v['success_rate']:.0%}"
            print(
                f"variant {name}: calls={v['calls']} feedback={v['feedback']} success={rate} "
                f"p50={v['latency_ms_p50']:.1f}ms cost=${v['cost_usd']:.6f}"
            )
        export = admin.get(
            f"{server.url}/v1/datasets/support/export",
            params={"format": "openai-chat", "outcome": "success"},
            timeout=10,
        )
        print(f"fine-tuning examples (outcome=success): {len(export.text.splitlines())}")
    db.dispose()


def _traffic(ls: Any, client: openai.OpenAI) -> None:
    for i in range(20):
        with logos_shift.context(dataset="support", user_id=f"user-{i}"):
            reply = client.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": f"question {i}"}]
            )
        # Feedback by the provider's own response id: no id mapping to keep.
        ls.provide_feedback(reply.id, "success" if i % 4 else "failure")


if __name__ == "__main__":
    main()
