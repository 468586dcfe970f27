"""The server-side subcommands of ``logos-shift`` (need the ``server`` extra)."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone

from .store.db import Database
from .store.keys import create_key, list_keys, revoke_key
from .store.migrations import LATEST, current_version, migrate


def _open(url: str) -> Database:
    db = Database(url)
    migrate(db)
    return db


def cmd_server(args: argparse.Namespace) -> int:
    """Run ``logos-shift server``.

    Args:
        args: parsed arguments (host, port, database_url, log_level, workers, config).

    Returns:
        Exit status (2 for an invalid config).
    """
    from ._serve import run
    from .settings import SettingsError

    try:
        run(
            args.database_url,
            host=args.host,
            port=args.port,
            log_level=args.log_level,
            workers=args.workers,
            config_path=getattr(args, "config", None),
        )
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    """Run ``logos-shift keys create|list|revoke``.

    Args:
        args: parsed arguments.

    Returns:
        Exit status.
    """
    db = _open(args.database_url)
    try:
        if args.keys_cmd == "create":
            try:
                key, info = create_key(db, args.project, args.scope)
            except ValueError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
            print(key)
            print(
                f"created {info.scope} key #{info.id} for project {info.project!r}; "
                "it is shown only once, store it now",
                file=sys.stderr,
            )
            return 0
        if args.keys_cmd == "list":
            for k in list_keys(db, args.project):
                when = datetime.fromtimestamp(k.created_at, tz=timezone.utc).strftime("%Y-%m-%d")
                state = "revoked" if k.revoked else "active"
                print(f"{k.id}\t{k.project}\t{k.scope}\t{k.prefix}…\t{when}\t{state}")
            return 0
        if revoke_key(db, args.id):
            print(f"revoked key #{args.id}", file=sys.stderr)
            return 0
        print(f"error: no active key #{args.id}", file=sys.stderr)
        return 1
    finally:
        db.dispose()


def cmd_migrate(args: argparse.Namespace) -> int:
    """Run ``logos-shift migrate``: upgrade the schema in place.

    Args:
        args: parsed arguments (database_url).

    Returns:
        Exit status.
    """
    db = Database(args.database_url)
    try:
        before = current_version(db)
        applied = migrate(db)
        print(f"schema version {before} -> {LATEST} (applied: {applied or 'none'})")
    finally:
        db.dispose()
    return 0
