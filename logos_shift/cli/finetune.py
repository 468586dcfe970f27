"""``logos-shift finetune start``: build the dataset, launch the job, follow it to the canary.

An HTTP client of a running server (see :mod:`._http`); the server does the work.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import datetime, timezone
from typing import Any

from . import _http, _output
from .rollout import show_event

__all__ = ["parse_when", "register"]

#: Rollout states in which the job is still being trained or evaluated.
_WAITING = ("training", "evaluating")


def parse_when(text: str) -> float:
    """Parse ``--since`` / ``--until``: Unix seconds or an ISO-8601 date-time (UTC if naive).

    Args:
        text: what the user typed.

    Returns:
        Unix seconds.

    Raises:
        argparse.ArgumentTypeError: neither form.
    """
    try:
        return float(text)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: Unix seconds or must be an ISO-8601 date-time, e.g. 2026-01-31T12:00:00Z"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.timestamp()


def register(sub: Any) -> None:
    """Add ``finetune start`` to the ``logos-shift`` parser.

    Args:
        sub: the object ``ArgumentParser.add_subparsers()`` returned.
    """
    p = sub.add_parser(
        "finetune",
        help="fine-tune a model on a dataset and roll it out",
        description="Ask the server to fine-tune on a dataset's good calls and roll the "
        "model out in stages.",
    )
    fsub = p.add_subparsers(dest="finetune_cmd", required=True, metavar="{start}")
    s = fsub.add_parser(
        "start",
        help="build the dataset, launch the job, start the rollout",
        description="Build the dataset from the calls with success feedback, start a "
        "fine-tuning job and, when it succeeds, the staged rollout. Shows the job's "
        "progress until the rollout starts (or --no-wait).",
    )
    s.add_argument(
        "--dataset", required=True, help="the dataset to train on (see logos-shift datasets)"
    )
    s.add_argument("--base-model", required=True, metavar="MODEL", help="the model to fine-tune")
    s.add_argument(
        "--backend",
        default=None,
        metavar="NAME|URL",
        help="a backend the server's operator configured (by name; default: the server's "
        "default), or your own OpenAI-compatible API root (a URL; needs --backend-api-key)",
    )
    s.add_argument(
        "--backend-api-key",
        default=None,
        metavar="KEY",
        help="your key for a --backend URL, used by the server and never stored",
    )
    s.add_argument(
        "--route", default=None, help="the route to roll out on (default: the dataset's name)"
    )
    s.add_argument(
        "--control-model",
        default=None,
        metavar="MODEL",
        help="the model the variant is compared with (default: the dataset's most requested)",
    )
    s.add_argument(
        "--min-score",
        type=float,
        default=None,
        metavar="X",
        help="also train on calls whose feedback score is at least X",
    )
    s.add_argument(
        "--since",
        type=parse_when,
        default=None,
        metavar="TIME",
        help="only calls at or after TIME (ISO-8601 or Unix seconds)",
    )
    s.add_argument(
        "--until",
        type=parse_when,
        default=None,
        metavar="TIME",
        help="only calls before TIME (ISO-8601 or Unix seconds)",
    )
    s.add_argument(
        "--policy",
        default=None,
        metavar="JSON",
        help="rollout policy overrides, e.g. '{\"margin\": 0.05}' (README: the policy table)",
    )
    s.add_argument(
        "--webhook", default=None, metavar="URL", help="URL notified of every rollout event"
    )
    s.add_argument("--no-wait", action="store_true", help="return once the job is created")
    s.add_argument(
        "--timeout",
        type=float,
        default=3600.0,
        metavar="SECONDS",
        help="how long to follow the job (default 3600)",
    )
    s.add_argument(
        "--json",
        action="store_true",
        help="print the server's answer (and, when waiting, the final rollout status) as JSON",
    )
    _http.add_server_options(s)
    s.set_defaults(func=run_start)


def _is_url(value: str | None) -> bool:
    return value is not None and value.startswith(("http://", "https://"))


def run_start(args: argparse.Namespace) -> int:
    """Run ``logos-shift finetune start``.

    Args:
        args: parsed arguments.

    Returns:
        0 when the job was created (and, when waiting, ended in a rollout); 1 otherwise;
        2 for a bad ``--policy``.
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
            _output.err(f"--policy is not JSON: {exc}")
            return 2
    with _http.Client(args) as client:
        try:
            data = client.request(
                "POST", "/v1/finetune", body, ok=(202,), wait="the server to build the dataset"
            )
            route = data["route"]
            if not args.json:
                _show_created(args, data)
            if args.no_wait:
                if args.json:
                    _output.print_json(data)
                return 0
            status, final = _follow(client, route, args.timeout, data["job"]["id"], args.json)
            if args.json:
                _output.print_json({**data, "rollout": final})
            return status
        except _http.ServerError as exc:
            return _http.fail(exc)


def _show_created(args: argparse.Namespace, data: dict[str, Any]) -> None:
    counts = data["dataset"]
    _output.out(
        f"dataset {args.dataset}: {counts['train']} train / {counts['validation']} validation"
        f" / {counts['test']} test examples ({counts['duplicates']} duplicates dropped)"
    )
    if counts.get("hard_inputs"):
        _output.out(
            f"  {counts['hard_inputs']} inputs a rolled-back model failed on: "
            f"{counts['hard_answered']} have a good answer ({counts['hard_in_train']} "
            f"up-weighted in train), {counts['hard_unanswered']} have none yet"
        )
    for w in data.get("warnings") or []:
        _output.out(f"  warning: {w}")
    _output.out(f"job {data['job']['id']} created on {args.base_model}; route {data['route']!r}")


def _follow(
    client: _http.Client, route: str, timeout: float, job_id: str, quiet: bool
) -> tuple[int, dict[str, Any]]:
    """Show the job's events until the rollout leaves training/evaluating (or the timeout)."""
    seen: set[int] = set()
    first: int | None = None  # id of this job's first event: earlier rollouts are not shown
    deadline = time.monotonic() + timeout
    delay = 0.2
    progress = _output.Progress("the fine-tuning job")
    try:
        while True:
            data = client.request("GET", f"/v1/routes/{_http.quote(route, safe='')}/rollout")
            for e in data["events"]:
                if (
                    first is None
                    and e.get("action") == "training_started"
                    and job_id in " ".join(e.get("reasons", []))
                ):
                    first = e["id"]
                if first is not None and e["id"] >= first and e["id"] not in seen:
                    seen.add(e["id"])
                    if not quiet:
                        progress.clear()
                        show_event(e)
            state = data["state"]["status"]
            if state not in _WAITING:
                progress.clear()
                ok = state not in ("failed", "rolled_back")
                if not quiet:
                    reason = "" if ok else f": {data['state']['reason']}"
                    _output.out(f"rollout of {route!r} is {state}{reason}")
                return (0 if ok else 1), data
            if time.monotonic() > deadline:
                progress.clear()
                _output.err(
                    f"still {state} after {timeout:g}s; the server goes on by itself. "
                    f"Follow with: logos-shift rollout status {route}"
                )
                return 1, data
            progress.update(state)
            time.sleep(delay)
            delay = min(delay * 1.5, 10.0)
    finally:
        progress.clear()
