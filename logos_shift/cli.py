"""The ``logos-shift`` command line.

``export --from`` needs only the standard library, so it works on a machine
without the server extra.  Server subcommands import the server package only
when they run.  The rollout engineer's commands plug in through
``logos_shift/server/_rollout_cli.py`` (``register(subparsers)``) when present.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from . import _export

_PLUGINS = ("_rollout_cli",)


def _default_db() -> str:
    return os.environ.get("LOGOS_SHIFT_DATABASE_URL", "sqlite:///logos.db")


def _add_db(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--database-url",
        default=_default_db(),
        help="sqlite:///path.db (default: $LOGOS_SHIFT_DATABASE_URL or sqlite:///logos.db) "
        "or postgresql://user:pass@host/db",
    )


def _server_cmd(name: str) -> object:
    def run(args: argparse.Namespace) -> int:
        try:
            module = importlib.import_module("logos_shift.server._cli")
        except ImportError as exc:
            print(
                f"error: the server extra is not installed ({exc}); "
                "pip install 'logos-shift[server]'",
                file=sys.stderr,
            )
            return 2
        status: int = getattr(module, name)(args)
        return status

    return run


def _cmd_export(args: argparse.Namespace) -> int:
    path = args.source
    try:
        if path == "-":
            lines: Sequence[str] = sys.stdin.read().splitlines()
        else:
            with open(path, encoding="utf-8") as fh:
                lines = fh.read().splitlines()
    except OSError as exc:
        print(f"error: cannot read {path}: {exc}", file=sys.stderr)
        return 2
    out = open(args.output, "w", encoding="utf-8") if args.output else sys.stdout  # noqa: SIM115
    try:
        _, counts = _export.export_lines(
            lines, args.format, outcome=args.outcome, min_score=args.min_score, out=out
        )
    finally:
        if args.output:
            out.close()
    print(
        f"exported {counts['exported']} of {counts['calls']} calls "
        f"({counts['skipped']} not convertible, {counts['bad_lines']} unreadable lines)",
        file=sys.stderr,
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser of ``logos-shift``.

    Returns:
        The parser; each subcommand sets ``func``.
    """
    parser = argparse.ArgumentParser(
        prog="logos-shift", description="Logos Shift: capture, feedback, fine-tune, roll out."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("server", help="run the self-hosted Logos server")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8600, help="TCP port (default 8600)")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="uvicorn worker processes (default 1; 2+ for more cores)",
    )
    p.add_argument(
        "--config",
        default=None,
        help="the server's JSON config: backends, outbound policy, limits, rate limits "
        "(default: $LOGOS_SHIFT_SERVER_CONFIG; none needed)",
    )
    _add_db(p)
    p.set_defaults(func=_server_cmd("cmd_server"))

    p = sub.add_parser("keys", help="create, list or revoke API keys")
    keys = p.add_subparsers(dest="keys_cmd", required=True)
    k = keys.add_parser("create", help="create a key (printed once) for a project")
    k.add_argument("--project", required=True, help="project name (created if new)")
    k.add_argument("--scope", required=True, choices=["ingest", "admin"])
    _add_db(k)
    k = keys.add_parser("list", help="list keys (never their secrets)")
    k.add_argument("--project", default=None)
    _add_db(k)
    k = keys.add_parser("revoke", help="revoke a key by its id")
    k.add_argument("id", type=int)
    _add_db(k)
    p.set_defaults(func=_server_cmd("cmd_keys"))

    p = sub.add_parser("migrate", help="upgrade the database schema in place")
    _add_db(p)
    p.set_defaults(func=_server_cmd("cmd_migrate"))

    p = sub.add_parser(
        "export", help="export fine-tuning data from a local JSONL copy (no server needed)"
    )
    p.add_argument("--from", dest="source", required=True, help="the JSONL copy ('-' = stdin)")
    p.add_argument("--format", choices=list(_export.FORMATS), default="openai-chat")
    p.add_argument("--outcome", choices=["success", "failure", "neutral"], default=None)
    p.add_argument("--min-score", type=float, default=None)
    p.add_argument("-o", "--output", default=None, help="write here instead of stdout")
    p.set_defaults(func=_cmd_export)

    server_dir = Path(__file__).parent / "server"
    for name in _PLUGINS:
        if (server_dir / f"{name}.py").exists():
            try:
                plugin = importlib.import_module(f"logos_shift.server.{name}")
            except ImportError:
                continue  # the server extra is missing; those commands need it
            plugin.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line.

    Args:
        argv: arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit status.
    """
    args = build_parser().parse_args(argv)
    status: int = args.func(args)
    return status
