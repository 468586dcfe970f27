"""``logos-shift finetune …`` and ``logos-shift rollout …``: talk to a running server.

The server is ``--server`` or ``$LOGOS_SHIFT_SERVER_URL`` (default
``http://127.0.0.1:8600``); the admin key is ``--api-key`` or
``$LOGOS_SHIFT_ADMIN_KEY`` / ``$LOGOS_SHIFT_API_KEY``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

import requests

__all__ = ["register"]

_ACTIONS = ("status", "failures", "pause", "resume", "rollback", "promote", "evaluate")


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _err(text: str) -> None:
    sys.stderr.write(f"error: {text}\n")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--server", default=None, help="server URL ($LOGOS_SHIFT_SERVER_URL)")
    p.add_argument("--api-key", default=None, help="admin key ($LOGOS_SHIFT_ADMIN_KEY)")


def _when(text: str) -> float:
    """Parse ``--since`` / ``--until``: Unix seconds or an ISO-8601 date-time."""
    from .store.records import parse_ts

    try:
        return float(text)
    except ValueError:
        pass
    try:
        return parse_ts(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: Unix seconds or {exc}") from None


def register(subparsers: Any) -> None:
    """Add the ``finetune`` and ``rollout`` commands to the ``logos-shift`` parser.

    Args:
        subparsers: the object ``ArgumentParser.add_subparsers()`` returned.
    """
    p = subparsers.add_parser("finetune", help="fine-tune a model on a dataset and roll it out")
    sub = p.add_subparsers(dest="finetune_cmd", required=True)
    s = sub.add_parser("start", help="build the dataset, launch the job, start the rollout")
    s.add_argument("--dataset", required=True)
    s.add_argument("--base-model", required=True)
    s.add_argument(
        "--backend",
        default=None,
        help="a backend the server's operator configured (by name; default: the server's "
        "default), or your own OpenAI-compatible API root (a URL; needs --backend-api-key)",
    )
    s.add_argument(
        "--backend-api-key", default=None, help="your key for a --backend URL (never stored)"
    )
    s.add_argument("--route", default=None, help="route to roll out on (default: the dataset)")
    s.add_argument("--control-model", default=None)
    s.add_argument("--min-score", type=float, default=None)
    s.add_argument("--since", type=_when, default=None, help="only calls at or after (ISO/Unix)")
    s.add_argument("--until", type=_when, default=None, help="only calls before (ISO/Unix)")
    s.add_argument("--policy", default=None, help="JSON, e.g. '{\"margin\": 0.05}'")
    s.add_argument("--webhook", default=None, help="URL notified of every rollout event")
    s.add_argument("--no-wait", action="store_true", help="return once the job is created")
    s.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait for the job")
    _common(s)
    s.set_defaults(func=cmd_finetune_start)

    p = subparsers.add_parser("rollout", help="show or steer a route's rollout")
    p.add_argument("action", choices=_ACTIONS)
    p.add_argument("route")
    p.add_argument(
        "--events", type=int, default=20, help="status / failures: last N shown (0 = all)"
    )
    p.add_argument("--output", default=None, help="failures: also write them all as JSONL here")
    _common(p)
    p.set_defaults(func=cmd_rollout)


class _Client:
    def __init__(self, args: argparse.Namespace) -> None:
        self.url = (
            args.server or os.environ.get("LOGOS_SHIFT_SERVER_URL") or "http://127.0.0.1:8600"
        ).rstrip("/")
        key = (
            args.api_key
            or os.environ.get("LOGOS_SHIFT_ADMIN_KEY")
            or os.environ.get("LOGOS_SHIFT_API_KEY")
        )
        self.session = requests.Session()
        if key:
            self.session.headers["Authorization"] = f"Bearer {key}"

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        resp = self.session.request(method, self.url + path, json=body, timeout=120)
        try:
            data = resp.json()
        except ValueError:
            data = {"message": resp.text}
        return resp.status_code, data


def _fail(status: int, data: Any) -> int:
    msg = data.get("message") if isinstance(data, dict) else data
    _err(f"HTTP {status}: {msg}")
    if isinstance(data, dict):
        for d in data.get("details") or []:
            _err(f"  - {d}")
    return 1


def _show_event(e: dict[str, Any]) -> None:
    when = time.strftime("%H:%M:%S", time.localtime(float(e.get("ts", 0))))
    if e.get("action") == "job_status":
        _out(
            f"  [{when}] job {e.get('to')}" + "".join(f"\n      {m}" for m in e.get("reasons", []))
        )
        return
    pct = e.get("variant_pct")
    share = f" ({pct:.0%} on the variant)" if isinstance(pct, (int, float)) else ""
    _out(f"  [{when}] {e.get('action')}: {e.get('from')} -> {e.get('to')}{share}")
    for r in e.get("reasons") or []:
        _out(f"      {r}")


def _is_url(value: str | None) -> bool:
    return value is not None and value.startswith(("http://", "https://"))


def cmd_finetune_start(args: argparse.Namespace) -> int:
    """Run ``logos-shift finetune start``.

    Args:
        args: parsed arguments.

    Returns:
        0 when the job was created (and, when waiting, ended in a rollout);
        1 otherwise.
    """
    body: dict[str, Any] = {"dataset": args.dataset, "base_model": args.base_model}
    for key, value in (
        ("backend_url", args.backend if _is_url(args.backend) else None),
        ("backend", None if _is_url(args.backend) else args.backend),
        ("backend_api_key", args.backend_api_key),
        ("route", args.route),
        ("control_model", args.control_model),
        ("min_score", args.min_score),
        ("since", args.since),
        ("until", args.until),
        ("webhook_url", args.webhook),
    ):
        if value is not None:
            body[key] = value
    if args.policy:
        try:
            body["policy"] = json.loads(args.policy)
        except ValueError as exc:
            _err(f"--policy is not JSON: {exc}")
            return 2
    client = _Client(args)
    try:
        status, data = client.call("POST", "/v1/finetune", body)
        if status != 202:
            return _fail(status, data)
        route = data["route"]
        counts = data["dataset"]
        _out(
            f"dataset {args.dataset}: {counts['train']} train / {counts['validation']} validation"
            f" / {counts['test']} test examples ({counts['duplicates']} duplicates dropped)"
        )
        if counts.get("hard_inputs"):
            _out(
                f"  {counts['hard_inputs']} inputs a rolled-back model failed on: "
                f"{counts['hard_answered']} have a good answer ({counts['hard_in_train']} "
                f"up-weighted in train), {counts['hard_unanswered']} have none yet"
            )
        for w in data.get("warnings") or []:
            _out(f"  warning: {w}")
        _out(f"job {data['job']['id']} created on {args.base_model}; route {route!r}")
        if args.no_wait:
            return 0
        return _follow(client, route, args.timeout, data["job"]["id"])
    except requests.RequestException as exc:
        _err(f"cannot reach the server at {client.url}: {exc}")
        return 1
    finally:
        client.session.close()


def _follow(client: _Client, route: str, timeout: float, job_id: str) -> int:
    seen: set[int] = set()
    first: int | None = None  # id of this job's first event: earlier rollouts are not shown
    deadline = time.monotonic() + timeout
    delay = 0.2
    while True:
        status, data = client.call("GET", f"/v1/routes/{route}/rollout")
        if status != 200:
            return _fail(status, data)
        for e in data["events"]:
            if (
                first is None
                and e.get("action") == "training_started"
                and job_id in " ".join(e.get("reasons", []))
            ):
                first = e["id"]
            if first is not None and e["id"] >= first and e["id"] not in seen:
                seen.add(e["id"])
                _show_event(e)
        state = data["state"]["status"]
        if state not in ("training", "evaluating"):
            ok = state not in ("failed", "rolled_back")
            _out(
                f"rollout of {route!r} is {state}" + ("" if ok else f": {data['state']['reason']}")
            )
            return 0 if ok else 1
        if time.monotonic() > deadline:
            _err(
                f"still {state} after {timeout:g}s; follow with: logos-shift rollout status {route}"
            )
            return 1
        time.sleep(delay)
        delay = min(delay * 1.5, 10.0)


def _prompt(item: dict[str, Any]) -> str:
    msgs = (item.get("input") or {}).get("messages") or []
    for m in reversed(msgs):
        if isinstance(m, dict) and m.get("role") == "user":
            text = m.get("content")
            text = text if isinstance(text, str) else json.dumps(text)
            return text if len(text) <= 60 else text[:57] + "..."
    return "(no user message)"


def _show_failures(client: _Client, args: argparse.Namespace) -> int:
    status, data = client.call("GET", f"/v1/routes/{args.route}/rollout/failures")
    if status != 200:
        return _fail(status, data)
    _out(
        f"dataset {data['dataset']}: {data['count']} failed calls of rolled-back models kept "
        f"({data['inputs']} distinct inputs, {data['unanswered']} without a good answer yet)"
    )
    items = data["failures"]
    for f in items[-args.events :] if args.events else items:
        mark = "answered" if f["answered"] else "NEEDS ANSWER"
        _out(f"  {f['call_id']}  {f['reason']:<8} {f['variant_model']}  {mark:<12} {_prompt(f)}")
    if args.output:
        with open(args.output, "w", encoding="utf-8") as fh:
            fh.writelines(json.dumps(f, ensure_ascii=False) + "\n" for f in items)
        _out(f"wrote {len(items)} failures to {args.output}")
    return 0


def cmd_rollout(args: argparse.Namespace) -> int:
    """Run ``logos-shift rollout ACTION ROUTE``.

    Args:
        args: parsed arguments.

    Returns:
        0 on success, 1 on an error answer or an unreachable server.
    """
    client = _Client(args)
    try:
        if args.action == "status":
            status, data = client.call("GET", f"/v1/routes/{args.route}/rollout")
            if status != 200:
                return _fail(status, data)
            st = data["state"]
            ev = data["evidence"]
            _out(
                f"route {args.route}: {st['status']}, {data['variant_pct']:.0%} on "
                f"{st['variant_model'] or '(no model yet)'}; stage {st['stage_index'] + 1}"
                f"/{len(st['stages'])}"
            )
            for arm in ("control", "variant"):
                a = ev[arm]
                rate = f"{a['successes'] / a['feedback']:.3f}" if a["feedback"] else "-"
                _out(
                    f"  {arm:<8} calls {a['calls']:>6}  errors {a['errors']:>5}  "
                    f"feedback {a['feedback']:>6}  success {rate}"
                )
            window = data.get("srm_window") or {}
            units, calls = window.get("units"), window.get("calls")
            counted: dict[str, int] | None = units or calls
            if counted:
                also = ""
                if units and calls:
                    also = f" ({calls['variant']} / {calls['control']} calls)"
                _out(
                    f"  sample-ratio check (this stage): {counted['variant']} variant / "
                    f"{counted['control']} control {'units' if units else 'calls'}{also}"
                )
            kept = (data.get("info") or {}).get("kept_failures")
            if kept:
                _out(
                    f"  kept {kept} failed calls of the rolled-back model for the next dataset"
                    f" (logos-shift rollout failures {args.route})"
                )
            events = data["events"]
            shown = events[-args.events :] if args.events else events
            _out(
                f"events ({len(events) - len(shown)} earlier not shown):"
                if len(shown) < len(events)
                else "events:"
            )
            for e in shown:
                _show_event(e)
            return 0
        if args.action == "failures":
            return _show_failures(client, args)
        status, data = client.call("POST", f"/v1/routes/{args.route}/rollout/{args.action}")
        if status != 200:
            return _fail(status, data)
        _out(f"{data['action']}: route {args.route} is now {data['state']['status']}")
        for r in data["reasons"]:
            _out(f"  {r}")
        return 0
    except requests.RequestException as exc:
        _err(f"cannot reach the server at {client.url}: {exc}")
        return 1
    finally:
        client.session.close()
