"""Views of the server's data: ``datasets``, ``calls``, ``call ID``, ``stats ROUTE``,
``feedback pending``.

HTTP clients of a running server (an admin key).  Tables fit the terminal (the
last column is cut with ``…``; a pipe gets every character); ``--json`` prints the
server's answer instead.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from . import _http, _output
from .finetune import parse_when

__all__ = ["register"]

#: Feedback still unjoined after this long most likely names a wrong id: clients keep
#: undelivered calls in their spool for at most ``spool_max_age`` (7 days by default).
STALE_PENDING_S = 7 * 86400.0


def _json_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the server's answer as JSON")


def register(sub: Any) -> None:
    """Add the data views to the ``logos-shift`` parser.

    Args:
        sub: the object ``ArgumentParser.add_subparsers()`` returned.
    """
    p = sub.add_parser(
        "datasets",
        help="list the datasets with their call and feedback counts",
        description="The project's datasets: calls, calls with feedback, first and last call.",
    )
    _json_flag(p)
    _http.add_server_options(p)
    p.set_defaults(func=_cmd_datasets)

    p = sub.add_parser(
        "calls",
        help="list a dataset's calls (newest first), with filters",
        description="A dataset's calls, newest first (--oldest for oldest first).",
    )
    p.add_argument("dataset", help="the dataset (see logos-shift datasets)")
    p.add_argument(
        "--outcome",
        choices=["success", "failure", "neutral", "none"],
        default=None,
        help="only calls whose latest feedback has this outcome (none: without feedback)",
    )
    p.add_argument(
        "--min-score",
        type=float,
        default=None,
        metavar="X",
        help="only calls whose latest feedback score is at least X",
    )
    p.add_argument("--variant", default=None, help="only calls served by this arm of a route")
    p.add_argument(
        "--model", default=None, help="only calls that asked for or were served by MODEL"
    )
    p.add_argument(
        "--since",
        type=parse_when,
        default=None,
        metavar="TIME",
        help="only calls at or after TIME (ISO-8601 or Unix seconds)",
    )
    p.add_argument(
        "--until",
        type=parse_when,
        default=None,
        metavar="TIME",
        help="only calls before TIME (ISO-8601 or Unix seconds)",
    )
    p.add_argument(
        "--limit", type=int, default=20, metavar="N", help="show at most N calls (default 20)"
    )
    p.add_argument("--oldest", action="store_true", help="oldest first instead of newest first")
    _json_flag(p)
    _http.add_server_options(p)
    p.set_defaults(func=_cmd_calls)

    p = sub.add_parser(
        "call",
        help="show one call: its record and every feedback event",
        description="One call by its logos-shift id or the provider's response id "
        "(chatcmpl-…, msg_…).",
    )
    p.add_argument("id", help="the call's id (logos_shift_id) or its provider response id")
    _json_flag(p)
    _http.add_server_options(p)
    p.set_defaults(func=_cmd_call)

    p = sub.add_parser(
        "stats",
        help="per-arm statistics of a route (success, errors, latency, cost)",
        description="Per arm of a route: calls, feedback, success rate with its 95 %% "
        "interval, error and fallback rates, latency p50/p95 and cost.",
    )
    p.add_argument("route", help="the route's name")
    p.add_argument(
        "--since",
        type=parse_when,
        default=None,
        metavar="TIME",
        help="only calls at or after TIME (ISO-8601 or Unix seconds)",
    )
    p.add_argument(
        "--until",
        type=parse_when,
        default=None,
        metavar="TIME",
        help="only calls before TIME (ISO-8601 or Unix seconds)",
    )
    _json_flag(p)
    _http.add_server_options(p)
    p.set_defaults(func=_cmd_stats)

    p = sub.add_parser(
        "feedback",
        help="feedback still waiting for its call (a wrong id shows here)",
        description="pending: feedback the server keeps because no call with its id or "
        "response id has arrived. It is joined whenever the call comes, however late; "
        "feedback waiting longer than a client's spool keeps calls (7 days by default) "
        "names a wrong id.",
    )
    fsub = p.add_subparsers(dest="feedback_cmd", required=True, metavar="{pending}")
    f = fsub.add_parser("pending", help="list feedback whose call has not arrived, oldest first")
    f.add_argument(
        "--limit", type=int, default=100, metavar="N", help="show at most N (default 100)"
    )
    _json_flag(f)
    _http.add_server_options(f)
    f.set_defaults(func=_cmd_feedback_pending)


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _run(args: argparse.Namespace, show: Any) -> int:
    with _http.Client(args) as client:
        try:
            return int(show(client, args))
        except _http.ServerError as exc:
            return _http.fail(exc)


def _cmd_datasets(args: argparse.Namespace) -> int:
    def show(client: _http.Client, args: argparse.Namespace) -> int:
        data = client.request("GET", "/v1/datasets")
        pending = client.request("GET", "/v1/feedback/pending", params={"limit": 1})
        if args.json:
            _output.print_json({**data, "pending_feedback": pending["count"]})
            return 0
        rows = data["datasets"]
        if not rows:
            _output.note(
                "no datasets yet: calls appear here once a client with server_url= and an "
                "ingest key has sent some (they are uploaded every flush_interval, 2 s)"
            )
        else:
            _output.table(
                ["DATASET", "CALLS", "WITH FEEDBACK", "FIRST CALL (UTC)", "LAST CALL (UTC)"],
                [
                    (
                        d["name"],
                        d["calls"],
                        d["with_feedback"],
                        _output.when(d["first_ts"]),
                        _output.when(d["last_ts"]),
                    )
                    for d in rows
                ],
                right=[1, 2],
            )
        if pending["count"]:
            _output.note(
                f"{pending['count']} feedback event(s) wait for a call that has not arrived: "
                "logos-shift feedback pending"
            )
        return 0

    return _run(args, show)


def _summary(record: dict[str, Any]) -> str:
    """A one-line view of a call's input: the last user message, or the arguments."""
    value = record.get("input")
    if isinstance(value, dict):
        msgs = value.get("messages")
        if isinstance(msgs, list):
            for m in reversed(msgs):
                if isinstance(m, dict) and m.get("role") == "user":
                    content = m.get("content")
                    return content if isinstance(content, str) else json.dumps(content)
        if isinstance(value.get("input"), str):
            return str(value["input"])
    return "-" if value is None else json.dumps(value, ensure_ascii=False, default=str)


def _cmd_calls(args: argparse.Namespace) -> int:
    def show(client: _http.Client, args: argparse.Namespace) -> int:
        items: list[dict[str, Any]] = []
        cursor: str | None = None
        while len(items) < args.limit:
            params = {
                "outcome": args.outcome,
                "min_score": args.min_score,
                "variant": args.variant,
                "model": args.model,
                "since": _iso(args.since),
                "until": _iso(args.until),
                "limit": min(1000, args.limit - len(items)),
                "cursor": cursor,
                "order": "oldest" if args.oldest else "newest",
            }
            page = client.request(
                "GET", f"/v1/datasets/{_http.quote(args.dataset, safe='')}/calls", params=params
            )
            items.extend(page["calls"])
            cursor = page["next_cursor"]
            if cursor is None:
                break
        if args.json:
            _output.print_json({"calls": items, "next_cursor": cursor})
            return 0
        if not items:
            _output.note(f"no calls in dataset {args.dataset!r} match (see logos-shift datasets)")
            return 0
        rows = []
        for item in items:
            r = item["record"]
            fb = item["feedback"]
            outcome = fb["outcome"] or ("-" if not fb["count"] else "?")
            if r.get("error"):
                outcome = f"{outcome} error"
            latency = r.get("latency_ms")
            rows.append(
                (
                    r.get("id"),
                    str(r.get("ts", ""))[:19].replace("T", " "),
                    r.get("served_model") or r.get("requested_model") or r.get("function"),
                    r.get("variant"),
                    outcome,
                    None if latency is None else f"{latency:.0f} ms",
                    _summary(r),
                )
            )
        _output.table(
            ["ID", "TIME (UTC)", "MODEL", "VARIANT", "FEEDBACK", "LATENCY", "INPUT"],
            rows,
            right=[5],
        )
        if cursor is not None:
            _output.note(f"more calls match: --limit {args.limit * 5} shows more")
        return 0

    return _run(args, show)


def _cmd_call(args: argparse.Namespace) -> int:
    def show(client: _http.Client, args: argparse.Namespace) -> int:
        data = client.request("GET", f"/v1/calls/{_http.quote(args.id, safe='')}")
        if args.json:
            _output.print_json(data)
            return 0
        r = data["record"]
        fields = [
            ("id", r.get("id")),
            ("time", r.get("ts")),
            ("dataset", r.get("dataset")),
            ("source", r.get("source") or r.get("function")),
            ("provider", r.get("provider")),
            ("model", _models(r)),
            ("route", f"{r.get('route')} / {r.get('variant')}" if r.get("route") else None),
            ("fallback", "yes" if r.get("fallback") else None),
            ("response id", r.get("response_id")),
            ("latency", None if r.get("latency_ms") is None else f"{r['latency_ms']:.0f} ms"),
            ("usage", json.dumps(r["usage"]) if r.get("usage") else None),
            ("error", json.dumps(r["error"]) if r.get("error") else None),
            ("metadata", json.dumps(r["metadata"]) if r.get("metadata") else None),
        ]
        for name, value in fields:
            if value is not None:
                _output.out(f"{name + ':':<13}{value}")
        events = data["feedback_events"]
        _output.out(f"{'feedback:':<13}{len(events) or 'none'}")
        for e in events:
            score = "" if e.get("score") is None else f" score {e['score']}"
            comment = f" {e['comment']!r}" if e.get("comment") else ""
            _output.out(f"  {e.get('ts')}  {e.get('outcome')}{score}{comment}")
        for name in ("input", "output"):
            _output.out(f"{name}:")
            text = json.dumps(r.get(name), indent=2, ensure_ascii=False, default=str)
            for line in text.splitlines():
                _output.out("  " + line)
        return 0

    return _run(args, show)


def _models(r: dict[str, Any]) -> str | None:
    asked, served = r.get("requested_model"), r.get("served_model")
    if asked and served and asked != served:
        return f"{asked} -> {served}"
    return asked or served


def _pct(value: float | None) -> str | None:
    return None if value is None else f"{value:.1%}"


def _cmd_stats(args: argparse.Namespace) -> int:
    def show(client: _http.Client, args: argparse.Namespace) -> int:
        params = {"since": _iso(args.since), "until": _iso(args.until)}
        data = client.request(
            "GET", f"/v1/routes/{_http.quote(args.route, safe='')}/stats", params=params
        )
        if args.json:
            _output.print_json(data)
            return 0
        variants = data["variants"]
        if not variants:
            _output.note(f"route {args.route!r} has no calls yet (in this time range)")
            return 0
        rows = []
        for name, v in variants.items():
            ci = v.get("success_ci95")
            band = f"[{ci[0]:.2f}, {ci[1]:.2f}]" if ci else None
            p50, p95 = v.get("latency_ms_p50"), v.get("latency_ms_p95")
            cost = v.get("cost_per_call_usd")
            rows.append(
                (
                    name,
                    v["calls"],
                    v["feedback"],
                    _pct(v.get("success_rate")),
                    band,
                    _pct(v.get("error_rate")),
                    _pct(v.get("fallback_rate")),
                    None if p50 is None else f"{p50:.0f}",
                    None if p95 is None else f"{p95:.0f}",
                    None if cost is None else f"{cost:.6f}",
                )
            )
        _output.table(
            [
                "ARM",
                "CALLS",
                "FEEDBACK",
                "SUCCESS",
                "95% CI",
                "ERRORS",
                "FALLBACK",
                "P50 MS",
                "P95 MS",
                "USD/CALL",
            ],
            rows,
            right=[1, 2, 3, 5, 6, 7, 8, 9],
        )
        return 0

    return _run(args, show)


def _cmd_feedback_pending(args: argparse.Namespace) -> int:
    def show(client: _http.Client, args: argparse.Namespace) -> int:
        data = client.request("GET", "/v1/feedback/pending", params={"limit": args.limit})
        if args.json:
            _output.print_json(data)
            return 0
        if not data["count"]:
            _output.note("no feedback is waiting: every feedback event found its call")
            return 0
        now = time.time()
        rows = []
        for f in data["feedback"]:
            age = now - f["received_at"]
            hint = "a wrong id?" if age > STALE_PENDING_S else "waiting"
            rows.append((f["target"], f["outcome"], _output.ago(age), hint))
        _output.table(["TARGET", "OUTCOME", "WAITING", ""], rows)
        _output.note(
            f"{data['count']} feedback event(s) name a call the server has not received; "
            "each joins its call when it arrives, however late"
        )
        return 0

    return _run(args, show)
