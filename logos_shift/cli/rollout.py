"""``logos-shift rollout ACTION ROUTE``: show or steer a route's rollout on a running server."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from . import _http, _output

__all__ = ["register", "show_event", "srm_line"]

_ACTIONS = ("status", "failures", "pause", "resume", "rollback", "promote", "evaluate")


def register(sub: Any) -> None:
    """Add ``rollout`` to the ``logos-shift`` parser.

    Args:
        sub: the object ``ArgumentParser.add_subparsers()`` returned.
    """
    p = sub.add_parser(
        "rollout",
        help="show or steer a route's rollout",
        description="status: the stage, the evidence per arm and the events; failures: what "
        "rolled-back models failed on; pause | resume | rollback | promote: steer it by "
        "hand; evaluate: decide now on the evidence so far (the server also decides by "
        "itself, about a second after new feedback).",
    )
    p.add_argument("action", choices=_ACTIONS, help="what to do (status shows, the rest act)")
    p.add_argument("route", help="the route's name (by default the dataset's)")
    p.add_argument(
        "--events",
        type=int,
        default=20,
        metavar="N",
        help="status / failures: show the last N (default 20; 0 = all)",
    )
    p.add_argument(
        "--output",
        default=None,
        metavar="FILE",
        help="failures: also write them all as JSONL to FILE",
    )
    p.add_argument("--json", action="store_true", help="print the server's answer as JSON")
    _http.add_server_options(p)
    p.set_defaults(func=run)


def show_event(e: dict[str, Any]) -> None:
    """Print one rollout event (and its reasons, indented)."""
    when = time.strftime("%H:%M:%S", time.localtime(float(e.get("ts", 0))))
    if e.get("action") == "job_status":
        _output.out(
            f"  [{when}] job {e.get('to')}" + "".join(f"\n      {m}" for m in e.get("reasons", []))
        )
        return
    pct = e.get("variant_pct")
    share = f" ({pct:.0%} on the variant)" if isinstance(pct, (int, float)) else ""
    _output.out(f"  [{when}] {e.get('action')}: {e.get('from')} -> {e.get('to')}{share}")
    for r in e.get("reasons") or []:
        _output.out(f"      {r}")


def srm_line(data: dict[str, Any], now: float | None = None) -> str | None:
    """The sample-ratio line of ``rollout status``, or ``None`` when there is nothing to check.

    In the first ``srm_grace_s`` seconds of a stage nothing is counted (clients still
    on the previous share until their next refresh would look like a mismatch), so
    the line says when counting starts instead of showing zeros.

    Args:
        data: the answer of ``GET /v1/routes/{route}/rollout``.
        now: the Unix time (default: now).

    Returns:
        The line, or ``None``.
    """
    now = time.time() if now is None else now
    window = data.get("srm_window") or {}
    units, calls = window.get("units"), window.get("calls")
    since = window.get("since")
    if isinstance(since, (int, float)) and now < since:
        grace = (data.get("policy") or {}).get("srm_grace_s")
        why = f"the first {grace:g} s" if isinstance(grace, (int, float)) else "the first seconds"
        return (
            f"  sample-ratio check (this stage): starts in {_output.ago(since - now)} ({why} "
            "of a stage are left out: clients move to the new share at their next refresh)"
        )
    counted: dict[str, int] | None = units or calls
    if not counted:
        return None
    also = ""
    if units and calls:
        also = f" ({calls['variant']} / {calls['control']} calls)"
    kind = "units" if units else "calls"
    return (
        f"  sample-ratio check (this stage): {counted['variant']} variant / "
        f"{counted['control']} control {kind}{also}"
    )


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(ts)))


def _no_rollout(route: str) -> str:
    return (
        f"route {route!r} has no rollout yet; start one with: logos-shift finetune start "
        f"--dataset DATASET --base-model MODEL --route {route} (see logos-shift datasets)"
    )


def _status(client: _http.Client, args: argparse.Namespace) -> int:
    data = client.request("GET", f"/v1/routes/{_http.quote(args.route, safe='')}/rollout")
    if args.json:
        _output.print_json(data)
        return 0
    st = data["state"]
    ev = data["evidence"]
    serving = data.get("serving")
    if st["status"] == "failed" and serving:
        # Nothing changed for the clients: say what they get, then what failed.
        since = serving.get("since")
        when = f" since {_when(since)}" if since else ""
        _output.out(
            f"route {args.route}: serving {serving['model']}{when}; "
            f"last fine-tune failed: {st.get('reason') or 'no reason given'}"
        )
    else:
        _output.out(
            f"route {args.route}: {st['status']}, {data['variant_pct']:.0%} on "
            f"{st['variant_model'] or '(no model yet)'}; stage {st['stage_index'] + 1}"
            f"/{len(st['stages'])}"
        )
        if st.get("reason"):
            _output.out(f"  {st['reason']}")
    for arm in ("control", "variant"):
        a = ev[arm]
        rate = f"{a['successes'] / a['feedback']:.3f}" if a["feedback"] else "-"
        _output.out(
            f"  {arm:<8} calls {a['calls']:>6}  errors {a['errors']:>5}  "
            f"feedback {a['feedback']:>6}  success {rate}"
        )
    line = srm_line(data)
    if line:
        _output.out(line)
    kept = (data.get("info") or {}).get("kept_failures")
    if kept:
        _output.out(
            f"  kept {kept} failed calls of the rolled-back model for the next dataset"
            f" (logos-shift rollout failures {args.route})"
        )
    events = data["events"]
    shown = events[-args.events :] if args.events else events
    _output.out(
        f"events ({len(events) - len(shown)} earlier not shown):"
        if len(shown) < len(events)
        else "events:"
    )
    for e in shown:
        show_event(e)
    return 0


def _prompt(item: dict[str, Any]) -> str:
    msgs = (item.get("input") or {}).get("messages") or []
    for m in reversed(msgs):
        if isinstance(m, dict) and m.get("role") == "user":
            text = m.get("content")
            text = text if isinstance(text, str) else json.dumps(text)
            return text if len(text) <= 60 else text[:57] + "..."
    return "(no user message)"


def _failures(client: _http.Client, args: argparse.Namespace) -> int:
    data = client.request("GET", f"/v1/routes/{_http.quote(args.route, safe='')}/rollout/failures")
    items = data["failures"]
    if args.output:
        with open(args.output, "w", encoding="utf-8") as fh:
            fh.writelines(json.dumps(f, ensure_ascii=False) + "\n" for f in items)
    if args.json:
        _output.print_json(data)
        return 0
    _output.out(
        f"dataset {data['dataset']}: {data['count']} failed calls of rolled-back models kept "
        f"({data['inputs']} distinct inputs, {data['unanswered']} without a good answer yet)"
    )
    for f in items[-args.events :] if args.events else items:
        mark = "answered" if f["answered"] else "NEEDS ANSWER"
        _output.out(
            f"  {f['call_id']}  {f['reason']:<8} {f['variant_model']}  {mark:<12} {_prompt(f)}"
        )
    if args.output:
        _output.out(f"wrote {len(items)} failures to {args.output}")
    return 0


def run(args: argparse.Namespace) -> int:
    """Run ``logos-shift rollout ACTION ROUTE``.

    Args:
        args: parsed arguments.

    Returns:
        0 on success, 1 on an error answer or an unreachable server.
    """
    with _http.Client(args) as client:
        try:
            if args.action == "status":
                return _status(client, args)
            if args.action == "failures":
                return _failures(client, args)
            path = f"/v1/routes/{_http.quote(args.route, safe='')}/rollout/{args.action}"
            data = client.request("POST", path)
        except _http.ServerError as exc:
            if exc.status == 404 and "has no rollout" in str(exc):
                _output.err(_no_rollout(args.route))
                return 1
            return _http.fail(exc)
    if args.json:
        _output.print_json(data)
        return 0
    _output.out(f"{data['action']}: route {args.route} is now {data['state']['status']}")
    for r in data["reasons"]:
        _output.out(f"  {r}")
    return 0
