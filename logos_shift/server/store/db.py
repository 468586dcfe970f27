"""Engine setup for SQLite (default, WAL) and PostgreSQL (psycopg 3).

SQLite: one file, WAL journal so readers never block the writer, and
``BEGIN IMMEDIATE`` for write transactions so two writers queue on the
busy timeout instead of failing with "database is locked" when a read lock
is upgraded.  Inside one process writes also take a lock, which is cheaper
than SQLite's sleep-and-retry busy handler.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

DEFAULT_DATABASE_URL = "sqlite:///logos.db"


def normalise_url(url: str) -> str:
    """Map the URL forms users type onto the drivers the server ships with.

    Args:
        url: ``sqlite:///path.db``, ``postgresql://…`` or ``postgresql+psycopg://…``.

    Returns:
        The URL with an explicit psycopg 3 driver for PostgreSQL.

    Raises:
        ValueError: for a backend other than SQLite or PostgreSQL.
    """
    for plain in ("postgresql://", "postgres://"):
        if url.startswith(plain):
            return "postgresql+psycopg://" + url[len(plain) :]
    if url.startswith(("sqlite:", "postgresql+psycopg:")):
        return url
    raise ValueError(f"unsupported database URL {url!r}: use sqlite:/// or postgresql://")


def sqlite_path(url: str) -> Path | None:
    """Return the absolute file path of a SQLite URL (``None``: in memory, or not SQLite).

    Args:
        url: a database URL.

    Returns:
        The path the database file has (or will have), resolved from the
        current directory.
    """
    if not url.startswith("sqlite:"):
        return None
    database = sa.engine.make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database).expanduser().absolute()


def _sqlite_engine(url: str) -> Engine:
    engine = sa.create_engine(
        url, connect_args={"check_same_thread": False, "timeout": 30.0}, pool_size=8
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Take over transaction control from the sqlite3 module so that
        # BEGIN IMMEDIATE below is the statement that opens the transaction.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get("logos_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


class Database:
    """A SQLAlchemy engine plus the read / write transaction helpers.

    Args:
        url: database URL (see :func:`normalise_url`).

    Raises:
        ValueError: an unsupported URL, or a SQLite file in a directory that
            does not exist (the message names the path).
    """

    def __init__(self, url: str) -> None:
        self.url = normalise_url(url)
        path = sqlite_path(self.url)
        if path is not None and not path.parent.is_dir():
            raise ValueError(
                f"cannot open the database {path}: the directory {path.parent} does not exist "
                "(create it, or pass another --database-url / $LOGOS_SHIFT_DATABASE_URL)"
            )
        if self.url.startswith("sqlite"):
            self.engine = _sqlite_engine(self.url)
        else:
            try:
                self.engine = sa.create_engine(
                    self.url, pool_size=10, max_overflow=20, pool_pre_ping=True
                )
            except ImportError as exc:
                raise ValueError(
                    f"PostgreSQL needs its driver ({exc}): pip install 'logos-shift[postgres]'"
                ) from None
        self.dialect: str = self.engine.dialect.name
        self._write_lock = threading.Lock() if self.dialect == "sqlite" else None
        self._tx = threading.local()
        #: project id -> (config version, config, ETag); see ``_routes_store``.
        self.config_cache: dict[int, tuple[int, dict[str, Any], str]] = {}

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """Open a write transaction; commit on success, roll back on error.

        A write opened inside another write of the same thread joins the outer
        transaction (one commit at the end of the outermost).

        Yields:
            The connection, inside the transaction.
        """
        outer: Connection | None = getattr(self._tx, "conn", None)
        if outer is not None:
            # Nested in a write of this thread: it joins that transaction, so a
            # rollout transition (state, event, route) commits or fails as one.
            yield outer
            return
        lock = self._write_lock if self._write_lock is not None else nullcontext()
        with lock, self.engine.connect() as conn:
            conn = conn.execution_options(logos_write=True)
            with conn.begin():
                self._tx.conn = conn
                try:
                    yield conn
                finally:
                    self._tx.conn = None

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """Open a connection for reads (rolled back on close).

        Yields:
            The connection.
        """
        with self.engine.connect() as conn:
            yield conn

    def insert(self, table: sa.Table) -> Any:
        """Return a dialect-specific INSERT that supports ``on_conflict_do_nothing``.

        Args:
            table: the table to insert into.

        Returns:
            An insert construct of the SQLite or PostgreSQL dialect.
        """
        if self.dialect == "postgresql":
            return postgresql.insert(table)
        return sqlite.insert(table)

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()
