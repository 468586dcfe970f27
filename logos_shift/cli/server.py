"""``logos-shift server``, ``keys`` and ``migrate``: the commands that open the database.

They need the server extra; its modules are imported only when one of them
runs, so ``logos-shift --help`` and ``export`` work without it.

A database command never makes an empty ``./logos.db`` behind your back: the
ones that write (``server``, ``keys create``, ``migrate``) say so on stderr when
they create a new SQLite file, and the ones that only read (``keys list``,
``keys revoke``) refuse a file that does not exist, naming the path they looked at.
"""

from __future__ import annotations

import argparse
import os
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from . import _output

if TYPE_CHECKING:
    from logos_shift.server.store.db import Database

__all__ = ["register"]

DEFAULT_DATABASE_URL = "sqlite:///logos.db"
_SERVER_EXTRA = (
    "the server extra is not installed ({exc}); install it with "
    "pip install 'logos-shift[server]' (from a checkout: pip install -e '.[server]')"
)


def _add_db(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--database-url",
        default=None,
        metavar="URL",
        help="sqlite:///path.db or postgresql://user:pass@host/db "
        f"(default: $LOGOS_SHIFT_DATABASE_URL, else {DEFAULT_DATABASE_URL} in the current "
        "directory)",
    )


def _add_json(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the result as JSON")


def register(sub: Any) -> None:
    """Add ``server``, ``keys`` and ``migrate`` to the ``logos-shift`` parser.

    Args:
        sub: the object ``ArgumentParser.add_subparsers()`` returned.
    """
    p = sub.add_parser(
        "server",
        help="run the self-hosted Logos server",
        description="Serve ingest, feedback, config, datasets, stats, fine-tuning and "
        "rollouts over HTTP until Ctrl-C / SIGTERM. JSON logs go to stderr.",
    )
    p.add_argument(
        "--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1; 0.0.0.0 = all)"
    )
    p.add_argument("--port", type=int, default=8600, help="TCP port (default 8600)")
    p.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="least severe JSON log line written to stderr (default info)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="uvicorn worker processes (default 1; one per core for more throughput)",
    )
    p.add_argument(
        "--config",
        default=None,
        metavar="FILE",
        help="the server's JSON config: backends, outbound policy, limits, rate limits "
        "(default: $LOGOS_SHIFT_SERVER_CONFIG; none needed)",
    )
    _add_db(p)
    p.set_defaults(func=_cmd_server)

    p = sub.add_parser(
        "keys",
        help="create, list or revoke API keys",
        description="API keys of the server's projects, in its database (no server needs to run).",
    )
    keys = p.add_subparsers(dest="keys_cmd", required=True, metavar="{create,list,revoke}")
    k = keys.add_parser(
        "create",
        help="create a key (printed once) for a project",
        description="Create a key and print it on stdout, once: only its hash is stored.",
    )
    k.add_argument("--project", required=True, help="project name (created if new)")
    k.add_argument(
        "--scope",
        required=True,
        choices=["ingest", "admin"],
        help="ingest: send records and feedback, read the config (for your app); admin: "
        "also read data and manage routes, fine-tunes and rollouts (for you and the CLI)",
    )
    _add_db(k)
    _add_json(k)
    k.set_defaults(func=_cmd_keys)
    k = keys.add_parser("list", help="list keys (never their secrets)")
    k.add_argument("--project", default=None, help="only this project's keys")
    _add_db(k)
    _add_json(k)
    k.set_defaults(func=_cmd_keys)
    k = keys.add_parser("revoke", help="revoke a key by its id (see keys list)")
    k.add_argument("id", type=int, help="the key's id, the first column of keys list")
    _add_db(k)
    _add_json(k)
    k.set_defaults(func=_cmd_keys)

    p = sub.add_parser(
        "migrate",
        help="upgrade the database schema in place",
        description="Apply the schema migrations the database lacks (the server also does "
        "this when it starts).",
    )
    _add_db(p)
    _add_json(p)
    p.set_defaults(func=_cmd_migrate)


def _url(args: argparse.Namespace) -> str:
    url: str = (
        args.database_url or os.environ.get("LOGOS_SHIFT_DATABASE_URL") or DEFAULT_DATABASE_URL
    )
    return url


class _Refused(Exception):
    """A database command cannot run; the message says why (exit status 2)."""


def _check_database(url: str, *, create: bool, quiet: bool = False) -> None:
    """Refuse a SQLite file in a missing directory, or a missing file for a read.

    Args:
        url: the database URL.
        create: whether this command may create a new database file.
        quiet: don't say that a new file is created (the server logs it as JSON).

    Raises:
        _Refused: the database cannot or must not be opened.
    """
    from logos_shift.server.store.db import normalise_url, sqlite_path

    try:
        path = sqlite_path(normalise_url(url))
    except ValueError as exc:
        raise _Refused(str(exc)) from None
    if path is None:
        return
    if not path.parent.is_dir():
        raise _Refused(
            f"cannot open the database {path}: the directory {path.parent} does not exist "
            "(create it, or pass another --database-url / $LOGOS_SHIFT_DATABASE_URL)"
        )
    if path.exists():
        return
    if not create:
        raise _Refused(
            f"no database at {path} (run this where your database is, or pass "
            "--database-url sqlite:///PATH or set $LOGOS_SHIFT_DATABASE_URL; "
            "`logos-shift keys create` or `logos-shift server` creates a new one)"
        )
    if not quiet:
        _output.note(f"creating a new database at {path}")


def _open(url: str, *, create: bool, migrate_schema: bool = True) -> Database:
    """Open (and by default migrate) the database, with errors that name it.

    Raises:
        _Refused: see :func:`_check_database`; or the database cannot be opened.
    """
    import sqlalchemy.exc

    from logos_shift.server.store.db import Database
    from logos_shift.server.store.migrations import migrate

    _check_database(url, create=create)
    try:
        db = Database(url)
    except ValueError as exc:
        raise _Refused(str(exc)) from None
    if migrate_schema:
        try:
            migrate(db)
        except sqlalchemy.exc.DBAPIError as exc:
            db.dispose()
            raise _Refused(_db_error(db.engine.url, exc)) from None
    return db


def _db_error(url: Any, exc: Exception) -> str:
    shown = url.render_as_string(hide_password=True)
    cause = getattr(exc, "orig", None) or exc
    return f"cannot open the database {shown}: {str(cause).strip().splitlines()[0]}"


def _server_modules() -> bool:
    try:
        import fastapi  # noqa: F401
        import sqlalchemy  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        _output.err(_SERVER_EXTRA.format(exc=exc))
        return False
    return True


def _cmd_server(args: argparse.Namespace) -> int:
    if not _server_modules():
        return 2
    from logos_shift.server import bind, run
    from logos_shift.server.settings import SettingsError

    url = _url(args)
    try:
        sock = bind(args.host, args.port)  # first: a port in use is the one error shown
    except OSError as exc:
        _output.err(exc.strerror or str(exc))
        return 2
    try:
        _check_database(url, create=True, quiet=True)
    except _Refused as exc:
        sock.close()
        _output.err(str(exc))
        return 2
    try:
        run(
            url,
            host=args.host,
            port=args.port,
            log_level=args.log_level,
            workers=args.workers,
            sock=sock,
            config_path=args.config,
        )
    except SettingsError as exc:  # an invalid --config (or $LOGOS_SHIFT_SERVER_CONFIG)
        _output.err(str(exc))
        return 2
    except ValueError as exc:  # e.g. the database directory vanished meanwhile
        _output.err(str(exc))
        return 2
    return 0


def _cmd_keys(args: argparse.Namespace) -> int:
    if not _server_modules():
        return 2
    from logos_shift.server.store.keys import create_key, list_keys, revoke_key

    try:
        db = _open(_url(args), create=args.keys_cmd == "create")
    except _Refused as exc:
        _output.err(str(exc))
        return 2
    try:
        if args.keys_cmd == "create":
            try:
                key, info = create_key(db, args.project, args.scope)
            except ValueError as exc:
                _output.err(str(exc))
                return 2
            if args.json:
                _output.print_json(
                    {"key": key, "id": info.id, "project": info.project, "scope": info.scope}
                )
            else:
                _output.out(key)
            _output.note(
                f"created {info.scope} key #{info.id} for project {info.project!r}; "
                "it is shown only once, store it now"
            )
            return 0
        if args.keys_cmd == "list":
            rows = list_keys(db, args.project)
            if args.json:
                _output.print_json(
                    [
                        {
                            "id": k.id,
                            "project": k.project,
                            "scope": k.scope,
                            "prefix": k.prefix,
                            "created_at": k.created_at,
                            "revoked": k.revoked,
                        }
                        for k in rows
                    ]
                )
                return 0
            if not rows:
                _output.note("no keys yet: logos-shift keys create --project NAME --scope ingest")
                return 0
            _output.table(
                ["ID", "PROJECT", "SCOPE", "KEY", "CREATED", "STATE"],
                [
                    (
                        k.id,
                        k.project,
                        k.scope,
                        f"{k.prefix}…",
                        _day(k.created_at),
                        "revoked" if k.revoked else "active",
                    )
                    for k in rows
                ],
                right=[0],
            )
            return 0
        revoked = revoke_key(db, args.id)
        if args.json:
            _output.print_json({"id": args.id, "revoked": revoked})
        if revoked:
            _output.note(f"revoked key #{args.id}")
            return 0
        _output.err(f"no active key #{args.id} (see logos-shift keys list)")
        return 1
    finally:
        db.dispose()


def _day(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%d")


def _cmd_migrate(args: argparse.Namespace) -> int:
    if not _server_modules():
        return 2
    from logos_shift.server.store.migrations import LATEST, current_version, migrate

    try:
        db = _open(_url(args), create=True, migrate_schema=False)
    except _Refused as exc:
        _output.err(str(exc))
        return 2
    try:
        before = current_version(db)
        applied = migrate(db)
    except Exception as exc:  # a DBAPIError, reported without a traceback
        import sqlalchemy.exc

        if not isinstance(exc, sqlalchemy.exc.DBAPIError):
            raise
        _output.err(_db_error(db.engine.url, exc))
        return 2
    finally:
        db.dispose()
    if args.json:
        _output.print_json({"from": before, "to": LATEST, "applied": list(applied)})
    else:
        _output.out(f"schema version {before} -> {LATEST} (applied: {applied or 'none'})")
    return 0
