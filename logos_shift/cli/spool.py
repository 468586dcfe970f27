"""``logos-shift spool list`` and ``spool replay``: the disk spool, shown and put back to work.

The spool keeps batches that could not be uploaded yet, one directory per
destination (server URL + key).  ``list`` shows what waits where, including
batches quarantined as corrupt and destinations the server refused (a wrong
key or URL).  ``replay`` puts quarantined batches that decode back in line
(after a fix) and, given ``--server-url``, uploads every waiting batch at once
instead of waiting for the next run of the application.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from logos_shift import _settings
from logos_shift._transport.sinks import HttpSink
from logos_shift._transport.spool import CONFIG_MARKER, Spool

from . import _output

__all__ = ["register"]

_BIG = 1 << 62  # caps never apply: these commands do not write batches


def register(sub: Any) -> None:
    """Add ``spool list`` and ``spool replay`` to the ``logos-shift`` parser.

    Args:
        sub: the object ``ArgumentParser.add_subparsers()`` returned.
    """
    p = sub.add_parser(
        "spool",
        help="show the disk spool (batches waiting for the server) and replay it",
        description="The spool keeps batches that could not be uploaded yet, one directory "
        "per destination; the application replays them by itself once the server is back.",
    )
    verbs = p.add_subparsers(dest="verb", required=True)
    ls = verbs.add_parser("list", help="what waits in each destination directory")
    rp = verbs.add_parser(
        "replay",
        help="requeue quarantined batches that decode, and upload waiting batches now",
    )
    for q in (ls, rp):
        q.add_argument(
            "--spool-dir",
            default=None,
            metavar="DIR",
            help="the spool_dir setting (default: LOGOS_SHIFT_SPOOL_DIR, else the cache dir)",
        )
        q.add_argument("--json", action="store_true", help="print the result as JSON")
    rp.add_argument(
        "--server-url",
        default=None,
        metavar="URL",
        help="upload every waiting batch to this server now (default: only requeue)",
    )
    rp.add_argument(
        "--api-key",
        default=os.environ.get("LOGOS_SHIFT_API_KEY"),
        metavar="KEY",
        help="the key for --server-url (default: LOGOS_SHIFT_API_KEY)",
    )
    ls.set_defaults(func=run_list)
    rp.set_defaults(func=run_replay)


def _base(arg: str | None) -> Path:
    given = arg or os.environ.get("LOGOS_SHIFT_SPOOL_DIR")
    return Path(given) if given else _settings.default_cache_dir() / "spool"


def _destinations(base: Path) -> list[Path]:
    try:
        return sorted(p for p in base.iterdir() if p.is_dir() and not p.is_symlink())
    except OSError:
        return []


def _open(directory: Path) -> Spool:
    return Spool(directory, _BIG, _BIG, float(_BIG))


def _describe(directory: Path) -> dict[str, Any]:
    sp = _open(directory)
    files, size = sp.pending()
    records = sum(_records(p) for p in sp.batches())
    claims = sum(1 for p in directory.iterdir() if p.name.endswith(".inflight"))
    refused: Any = None
    try:
        refused = json.loads((directory / CONFIG_MARKER).read_text()).get("origin")
    except (OSError, ValueError, AttributeError):
        pass
    return {
        "dir": str(directory),
        "batches": files,
        "records": records,
        "bytes": size,
        "claimed": claims,
        "quarantined": sp.quarantined(),
        "config_error_at": refused,
    }


def _records(path: Path) -> int:
    try:
        return int(path.name.split(".", 1)[0].rsplit("-", 1)[1])
    except (IndexError, ValueError):
        return 0


def run_list(args: argparse.Namespace) -> int:
    """Run ``logos-shift spool list``.

    Args:
        args: parsed arguments.

    Returns:
        0.
    """
    base = _base(args.spool_dir)
    rows = [_describe(d) for d in _destinations(base)]
    if args.json:
        _output.print_json({"spool_dir": str(base), "destinations": rows})
        return 0
    if not rows:
        _output.note(f"the spool {base} is empty")
        return 0
    _output.table(
        ["destination", "batches", "records", "claimed", "quarantined", "refused by"],
        [
            [Path(r["dir"]).name, r["batches"], r["records"], r["claimed"],
             len(r["quarantined"]), r["config_error_at"] or ""]
            for r in rows
        ],
    )  # fmt: skip
    for r in rows:
        for q in r["quarantined"]:
            _output.note(f"quarantined: {q}")
    return 0


def run_replay(args: argparse.Namespace) -> int:
    """Run ``logos-shift spool replay``.

    Args:
        args: parsed arguments.

    Returns:
        0, or 1 when an upload failed (the batch stays in the spool).
    """
    base = _base(args.spool_dir)
    requeued = still_bad = uploaded = records = failed = 0
    sink = HttpSink(args.server_url, args.api_key, 30.0) if args.server_url else None
    try:
        for directory in _destinations(base):
            sp = _open(directory)
            sp.recover()
            ok, bad = sp.requeue_quarantined()
            requeued += ok
            still_bad += bad
            while sink is not None:
                claim = sp.claim_oldest()
                if claim is None:
                    break
                result = sink.send(claim.lines)
                if result.failed:
                    claim.release()
                    failed += 1
                    _output.err(f"upload failed ({result.error}); the batch stays in the spool")
                    break
                claim.done()
                uploaded += 1
                records += result.sent
            if sink is not None and failed == 0:
                sp.clear_config_error()
    finally:
        if sink is not None:
            sink.close()
    summary = {"requeued": requeued, "still_corrupt": still_bad, "uploaded_batches": uploaded,
               "uploaded_records": records, "failed": failed}  # fmt: skip
    if args.json:
        _output.print_json(summary)
    else:
        _output.note(
            f"requeued {requeued} quarantined batches ({still_bad} still do not decode); "
            f"uploaded {uploaded} batches ({records} records)"
            + ("" if sink is not None else "; the application replays the rest by itself")
        )
    return 1 if failed else 0
