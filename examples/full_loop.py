"""The whole loop, offline: capture → feedback → fine-tune → staged rollout → promoted;
then a worse model → rolled back.

Everything runs locally over real sockets: ``logos_shift.testing.FakeProvider`` plays
OpenAI (chat completions *and* the files + fine-tuning jobs API), the Logos server
runs on a temporary SQLite file, and the app's calls go through the official openai
SDK.  ``python examples/full_loop.py`` (or ``make demo``)

The app only sends traffic and feedback.  Every step of the rollout is the
server's own decision (its rollout loop looks at a route about a second after
new feedback arrives); the demo prints each one from the rollout's event log as
it happens.

The fake provider answers every model with an echo, so answer *quality* is played
by the simulated users' feedback: they like the control model 85 % of the time,
the first fine-tuned model 90 %, and the second one only 55 %.
"""

from __future__ import annotations

import json
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import openai

import logos_shift
from logos_shift.cli import main as cli
from logos_shift.server import Backend, ServerSettings, create_app, create_key
from logos_shift.server._serve import serve_in_thread
from logos_shift.testing import FakeProvider

POLICY = {"min_per_arm": 10, "min_stage_s": 0, "margin": 0.10}
P_CONTROL = 0.85


def ask(ls: Any, client: openai.OpenAI, user: str, question: str) -> Any:
    """One app call for one user: the router picks the model, the call is captured."""
    msgs = [{"role": "user", "content": question}]
    with logos_shift.context(dataset="support", user_id=user):
        return client.chat.completions.create(model="gpt-4o", messages=msgs)  # type: ignore[arg-type]


def traffic(
    ls: Any, client: openai.OpenAI, rng: random.Random, n: int, variant: str, p_ft: float
) -> int:
    """n calls from random users, each rated by its user; returns how many hit the variant."""
    on_variant = 0
    for _ in range(n):
        user = f"user-{rng.randrange(100_000)}"
        resp = ask(ls, client, user, f"question {rng.randrange(1000)}")
        is_ft = resp.model == variant
        on_variant += is_ft
        ok = rng.random() < (p_ft if is_ft else P_CONTROL)
        ls.provide_feedback(resp.id, "success" if ok else "failure")
    return on_variant


class Decisions:
    """Prints the server's decisions as they happen, from the rollout's event log."""

    def __init__(self) -> None:
        self.seen = 0
        self.t0 = time.monotonic()

    def catch_up(self, status: dict[str, Any]) -> None:
        """Print the events the server logged since the last look."""
        for e in status["events"]:
            if e["id"] <= self.seen:
                continue
            self.seen = e["id"]
            if e["action"] in ("job_status", "training_started"):
                continue
            pct = e.get("variant_pct")
            share = f", {pct:.0%} on the variant" if isinstance(pct, (int, float)) else ""
            print(
                f"    [server, {time.monotonic() - self.t0:5.1f}s] {e['action']} "
                f"({e.get('from')} => {e.get('to')}{share})"
            )
            n = e.get("numbers") or {}
            v, c = n.get("variant", {}), n.get("control", {})
            if v or c:
                print(
                    f"       variant {v.get('success_rate', 0):.3f} (n={v.get('feedback', 0)}) "
                    f"vs control {c.get('success_rate', 0):.3f} (n={c.get('feedback', 0)})"
                )
            for reason in (e.get("reasons") or [])[:2]:
                print(f"       {reason}")


def roll_out(
    ls: Any, client: openai.OpenAI, admin: Any, p_ft: float, seed: int, decisions: Decisions
) -> str:
    """Send traffic and feedback only, until the server has promoted or rolled back."""
    rng = random.Random(seed)
    for batch in range(1, 300):
        status = admin("GET", "/v1/routes/support/rollout")
        decisions.catch_up(status)
        state = status["state"]
        if state["status"] in ("promoted", "rolled_back", "paused", "failed"):
            ls.router.refresh_now()  # what every client's next config poll does
            return str(state["status"])
        share = status["variant_pct"]
        n = 200 if share < 0.25 else 100
        hits = traffic(ls, client, rng, n, state["variant_model"], p_ft)
        ls.flush(10)
        print(f"  batch {batch:>2}: {n} calls at {share:>4.0%} -> {hits:>3} on the variant")
    return "undecided"


def main() -> None:
    """Run the demo."""
    t0 = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="logos-full-loop-"))
    with FakeProvider() as fp:
        fp.finetune_schedule(seconds_per_phase=0.3)
        # The server's operator configures the fine-tuning backend (here: the fake provider)
        # by name; projects choose it by name and never see its key.
        backends = {"fake": Backend("fake", fp.openai_base_url, "fake-operator-key")}
        # The server runs the rollout loop itself: a decision follows new feedback
        # within about a second; nothing here asks it for one.
        app = create_app(f"sqlite:///{tmp / 'logos.db'}", settings=ServerSettings(backends))
        admin_key, _ = create_key(app.state.db, "demo", "admin")
        ingest_key, _ = create_key(app.state.db, "demo", "ingest")
        with (
            serve_in_thread(app) as server,
            openai.OpenAI(base_url=fp.openai_base_url, api_key="demo", max_retries=0) as client,
        ):
            import requests

            http = requests.Session()
            http.headers["Authorization"] = f"Bearer {admin_key}"

            def admin(method: str, path: str) -> Any:
                r = http.request(method, server.url + path, timeout=30)
                r.raise_for_status()
                return r.json()

            ls = logos_shift.init(
                api_key=ingest_key,
                server_url=server.url,
                refresh_seconds=0.5,
                spool_dir=str(tmp / "spool"),
                state_dir=str(tmp / "state"),
            )
            logos_shift.patch_openai()
            cli_args = ["--server", server.url, "--api-key", admin_key]

            print(
                f"demo policy {json.dumps(POLICY)}: faster than the defaults (margin 0.05, "
                "100 feedback events per arm and an hour per stage) so it ends in seconds"
            )
            print("1. capture: 80 calls to gpt-4o, users rate them")
            rng = random.Random(1)
            for i in range(80):
                resp = ask(ls, client, f"user-{i}", f"How do I reset password #{i}?")
                ls.provide_feedback(resp.id, "success" if rng.random() < P_CONTROL else "failure")
            ls.flush(10)
            stats = admin("GET", "/v1/datasets")["datasets"][0]
            print(f"   dataset 'support': {stats['calls']} calls, {stats['with_feedback']} rated")

            print("\n2. fine-tune on the fake backend (logos-shift finetune start)")
            cli(
                [
                    "finetune",
                    "start",
                    "--dataset",
                    "support",
                    "--base-model",
                    "gpt-4o-mini",
                    "--backend",
                    "fake",
                    "--policy",
                    json.dumps(POLICY),
                    *cli_args,
                ]
            )
            ls.router.refresh_now()

            print("\n3. staged rollout of the better model (users like it 90 %)")
            decisions = Decisions()
            end = roll_out(ls, client, admin, 0.90, seed=2, decisions=decisions)
            cfg = http.get(server.url + "/v1/config", timeout=10).json()["routes"]["support"]
            print(
                f"   => {end}; clients now get {cfg['rollout']['variant_pct']:.0%} on "
                f"{cfg['variants'][0]['model']}"
            )

            print("\n4. a second fine-tune that turns out worse (users like it 55 %)")
            fp.finetune_schedule(seconds_per_phase=0.1)
            cli(
                [
                    "finetune",
                    "start",
                    "--dataset",
                    "support",
                    "--base-model",
                    "gpt-4o-mini",
                    "--backend",
                    "fake",
                    "--policy",
                    json.dumps(POLICY),
                    *cli_args,
                ]
            )
            ls.router.refresh_now()
            end2 = roll_out(ls, client, admin, 0.55, seed=3, decisions=decisions)
            cfg = http.get(server.url + "/v1/config", timeout=10).json()["routes"]["support"]
            print(
                f"   => {end2}; clients now get {cfg['rollout']['variant_pct']:.0%} on the "
                f"variant and the control is {cfg['control']['model']}"
            )

            print("\n5. logos-shift rollout status support")
            cli(["rollout", "status", "support", *cli_args])
            ls.shutdown(timeout=10)
            http.close()
    print(f"\nfirst model: {end}; second model: {end2}; took {time.perf_counter() - t0:.1f}s")


if __name__ == "__main__":
    main()
