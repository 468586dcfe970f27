"""The ``logos-shift`` command line.

Each command lives in its own module with a ``register(subparsers)`` function;
:data:`COMMANDS` lists them, one line each, so adding a command is one line
here.  Modules import what they need only when their command runs: ``export``
needs the core package alone, ``server``/``keys``/``migrate`` the server extra,
and the views (``datasets``, ``calls``, ``call``, ``stats``, ``feedback``) and
``finetune``/``rollout`` are HTTP clients of a running server.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

__all__ = ["COMMANDS", "build_parser", "main"]

#: The modules of ``logos_shift.cli`` that register commands, in the order ``--help`` shows.
COMMANDS: tuple[str, ...] = (
    "server",  # server, keys, migrate
    "data",  # datasets, calls, call, stats, feedback
    "export",
    "finetune",
    "rollout",
    "spool",  # spool list, spool replay
)


def _version() -> str:
    from logos_shift import __version__

    return f"logos-shift {__version__} (Python {sys.version.split()[0]})"


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser of ``logos-shift``.

    Returns:
        The parser; each subcommand sets ``func``.
    """
    parser = argparse.ArgumentParser(
        prog="logos-shift",
        description="Logos Shift: capture, feedback, fine-tune, roll out. "
        "Run `logos-shift COMMAND --help` for a command's options.",
    )
    parser.add_argument(
        "--version", action="version", version=_version(), help="print the version and exit"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line.

    A reader that goes away (``logos-shift calls x | head``) ends the command
    quietly, as other Unix tools do; Ctrl-C exits 130 without a traceback.

    Args:
        argv: arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit status.
    """
    args = build_parser().parse_args(argv)
    try:
        status: int = args.func(args)
        sys.stdout.flush()
    except BrokenPipeError:
        _quiet_stdout()
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("\ninterrupted\n")
        return 130
    return status


def _quiet_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's exit flush cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
