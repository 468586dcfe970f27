"""``logos-shift export --from calls.jsonl``: fine-tuning data from a local copy, no server.

Needs only the standard library (and the core package), so it works where the
server extra is not installed.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from logos_shift import export as _export

from . import _output

__all__ = ["register"]


def register(sub: Any) -> None:
    """Add ``export`` to the ``logos-shift`` parser.

    Args:
        sub: the object ``ArgumentParser.add_subparsers()`` returned.
    """
    p = sub.add_parser(
        "export",
        help="export fine-tuning data from a local JSONL copy (no server needed)",
        description="Turn a local JSONL copy (init(filename=...)) into fine-tuning data; "
        "the feedback records in it are joined to their calls.",
    )
    p.add_argument(
        "--from",
        dest="source",
        required=True,
        metavar="FILE",
        help="the JSONL copy written by init(filename=...) ('-' = stdin)",
    )
    p.add_argument(
        "--format",
        choices=list(_export.FORMATS),
        default="openai-chat",
        help="openai-chat: fine-tuning examples; gemini: Gemini tuning examples "
        "(google-genai records); raw: the records as written (default: openai-chat)",
    )
    p.add_argument(
        "--outcome",
        choices=["success", "failure", "neutral"],
        default=None,
        help="only calls whose latest feedback has this outcome",
    )
    p.add_argument(
        "--min-score",
        type=float,
        default=None,
        metavar="X",
        help="only calls whose latest feedback score is at least X",
    )
    p.add_argument(
        "-o", "--output", default=None, metavar="FILE", help="write here instead of stdout"
    )
    p.add_argument(
        "--json", action="store_true", help="print the summary on stderr as JSON (counts)"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``logos-shift export``.

    Args:
        args: parsed arguments.

    Returns:
        0, or 2 when the source cannot be read.
    """
    path = args.source
    try:
        if path == "-":
            lines: Sequence[str] = sys.stdin.read().splitlines()
        else:
            with open(path, encoding="utf-8") as fh:
                lines = fh.read().splitlines()
    except OSError as exc:
        _output.err(f"cannot read {path}: {exc}")
        return 2
    out = open(args.output, "w", encoding="utf-8") if args.output else sys.stdout  # noqa: SIM115
    try:
        _, counts = _export.export_lines(
            lines, args.format, outcome=args.outcome, min_score=args.min_score, out=out
        )
    finally:
        if args.output:
            out.close()
    if args.json:
        _output.note(json.dumps(counts))
    else:
        _output.note(
            f"exported {counts['exported']} of {counts['calls']} calls "
            f"({counts['skipped']} not convertible, {counts['bad_lines']} unreadable lines)"
        )
    return 0
