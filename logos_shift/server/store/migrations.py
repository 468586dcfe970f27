"""A small versioned migration runner.

Why not Alembic: the schema is a handful of tables, the server must upgrade
itself on start with no extra files or commands, and the same code must run
on SQLite and PostgreSQL.  A ``schema_migrations`` table records applied
versions; :data:`MIGRATIONS` is an ordered list of functions, each creating
the DDL *as it was at that version* (frozen, never edited afterwards), so a
database at any version is brought forward by running the rest in order,
each in its own transaction.  On PostgreSQL an advisory lock serialises
servers that start at the same time; SQLite's ``BEGIN IMMEDIATE`` does the
same there.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .db import Database

_LOCK_ID = 86_000_001


class Migration(NamedTuple):
    """One schema version: its number, a name and the function applying it."""

    version: int
    name: str
    apply: Callable[[Connection], None]


def _v1_initial(conn: Connection) -> None:
    md = sa.MetaData()
    sa.Table(
        "projects",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.Text, nullable=False, unique=True),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("config_version", sa.Integer, nullable=False),
    )
    sa.Table(
        "api_keys",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id"), nullable=False),
        sa.Column("key_hash", sa.Text, nullable=False, unique=True),
        sa.Column("prefix", sa.Text, nullable=False),
        sa.Column("scope", sa.Text, nullable=False),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("revoked_at", sa.Double, nullable=True),
    )
    sa.Table(
        "calls",
        md,
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id"), nullable=False),
        sa.Column("ts", sa.Double, nullable=False),
        sa.Column("dataset", sa.Text, nullable=False),
        sa.Column("source", sa.Text),
        sa.Column("function", sa.Text),
        sa.Column("provider", sa.Text),
        sa.Column("requested_model", sa.Text),
        sa.Column("served_model", sa.Text),
        sa.Column("route", sa.Text),
        sa.Column("variant", sa.Text),
        sa.Column("fallback", sa.Boolean, nullable=False),
        sa.Column("is_error", sa.Boolean, nullable=False),
        sa.Column("response_id", sa.Text),
        sa.Column("input_tokens", sa.BigInteger),
        sa.Column("output_tokens", sa.BigInteger),
        sa.Column("latency_ms", sa.Double),
        sa.Column("ttft_ms", sa.Double),
        sa.Column("outcome", sa.Text),
        sa.Column("score", sa.Double),
        sa.Column("feedback_count", sa.Integer, nullable=False),
        sa.Column("received_at", sa.Double, nullable=False),
        sa.Column("record", sa.Text, nullable=False),
        sa.Index("ix_calls_dataset_ts", "project_id", "dataset", "ts", "id"),
        sa.Index("ix_calls_response_id", "project_id", "response_id"),
    )
    sa.Table(
        "feedback",
        md,
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id"), nullable=False),
        sa.Column("ts", sa.Double, nullable=False),
        sa.Column("target", sa.Text, nullable=False),
        sa.Column("call_id", sa.Text),
        sa.Column("outcome", sa.Text, nullable=False),
        sa.Column("score", sa.Double),
        sa.Column("received_at", sa.Double, nullable=False),
        sa.Column("record", sa.Text, nullable=False),
        sa.Index("ix_feedback_target", "project_id", "target"),
        sa.Index("ix_feedback_call", "project_id", "call_id"),
    )
    sa.Table(
        "routes",
        md,
        sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id"), primary_key=True),
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("updated_at", sa.Double, nullable=False),
    )
    md.create_all(conn)


def _v2_prices_and_route_index(conn: Connection) -> None:
    md = sa.MetaData()
    sa.Table("projects", md, sa.Column("id", sa.Integer, primary_key=True))
    calls = sa.Table(
        "calls",
        md,
        sa.Column("project_id", sa.Integer),
        sa.Column("route", sa.Text),
        sa.Column("variant", sa.Text),
        sa.Column("ts", sa.Double),
    )
    prices = sa.Table(
        "prices",
        md,
        sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id"), primary_key=True),
        sa.Column("model", sa.Text, primary_key=True),
        sa.Column("input_per_mtok", sa.Double, nullable=False),
        sa.Column("output_per_mtok", sa.Double, nullable=False),
        sa.Column("updated_at", sa.Double, nullable=False),
    )
    prices.create(conn)
    sa.Index(
        "ix_calls_route", calls.c.project_id, calls.c.route, calls.c.variant, calls.c.ts
    ).create(conn)


def _v3_finetune_launches(conn: Connection) -> None:
    md = sa.MetaData()
    sa.Table("projects", md, sa.Column("id", sa.Integer, primary_key=True))
    sa.Table(
        "finetune_launches",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id"), nullable=False),
        sa.Column("backend", sa.Text, nullable=False),
        sa.Column("route", sa.Text, nullable=False),
        sa.Column("ts", sa.Double, nullable=False),
        sa.Index("ix_finetune_launches_project_ts", "project_id", "ts"),
    ).create(conn)


def _v4_calls(md: sa.MetaData, name: str) -> sa.Table:
    return sa.Table(
        name,
        md,
        sa.Column("id", sa.Text, nullable=False),
        sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id"), nullable=False),
        sa.Column("ts", sa.Double, nullable=False),
        sa.Column("dataset", sa.Text, nullable=False),
        sa.Column("source", sa.Text),
        sa.Column("function", sa.Text),
        sa.Column("provider", sa.Text),
        sa.Column("requested_model", sa.Text),
        sa.Column("served_model", sa.Text),
        sa.Column("route", sa.Text),
        sa.Column("variant", sa.Text),
        sa.Column("fallback", sa.Boolean, nullable=False),
        sa.Column("is_error", sa.Boolean, nullable=False),
        sa.Column("response_id", sa.Text),
        sa.Column("input_tokens", sa.BigInteger),
        sa.Column("output_tokens", sa.BigInteger),
        sa.Column("latency_ms", sa.Double),
        sa.Column("ttft_ms", sa.Double),
        sa.Column("outcome", sa.Text),
        sa.Column("score", sa.Double),
        sa.Column("feedback_count", sa.Integer, nullable=False),
        sa.Column("received_at", sa.Double, nullable=False),
        sa.Column("record", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("project_id", "id"),
    )


def _v4_feedback(md: sa.MetaData, name: str) -> sa.Table:
    return sa.Table(
        name,
        md,
        sa.Column("id", sa.Text, nullable=False),
        sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id"), nullable=False),
        sa.Column("ts", sa.Double, nullable=False),
        sa.Column("target", sa.Text, nullable=False),
        sa.Column("call_id", sa.Text),
        sa.Column("outcome", sa.Text, nullable=False),
        sa.Column("score", sa.Double),
        sa.Column("received_at", sa.Double, nullable=False),
        sa.Column("record", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("project_id", "id"),
    )


#: The indexes of calls and feedback at v4 (unchanged from v1/v2; recreated on SQLite).
_V4_INDEXES: dict[str, list[tuple[str, tuple[str, ...]]]] = {
    "calls": [
        ("ix_calls_dataset_ts", ("project_id", "dataset", "ts", "id")),
        ("ix_calls_response_id", ("project_id", "response_id")),
        ("ix_calls_route", ("project_id", "route", "variant", "ts")),
    ],
    "feedback": [
        ("ix_feedback_target", ("project_id", "target")),
        ("ix_feedback_call", ("project_id", "call_id")),
    ],
}


def _v4_per_project_ids(conn: Connection) -> None:
    """Record ids are unique per project: primary keys ``(project_id, id)``.

    PostgreSQL swaps the primary key constraint in place.  SQLite cannot alter a
    primary key, so each table is rebuilt: a new table, every row copied, the old
    one dropped, the new one renamed, its indexes recreated (one transaction).
    """
    if conn.dialect.name == "postgresql":
        for table in ("calls", "feedback"):
            old = sa.inspect(conn).get_pk_constraint(table)["name"]
            conn.execute(sa.text(f'ALTER TABLE {table} DROP CONSTRAINT "{old}"'))
            conn.execute(sa.text(f"ALTER TABLE {table} ADD PRIMARY KEY (project_id, id)"))
        return
    for table, build in (("calls", _v4_calls), ("feedback", _v4_feedback)):
        md = sa.MetaData()
        sa.Table("projects", md, sa.Column("id", sa.Integer, primary_key=True))
        new = build(md, f"{table}_v4")
        new.create(conn)
        cols = ", ".join(c.name for c in new.columns)
        conn.execute(sa.text(f"INSERT INTO {table}_v4 ({cols}) SELECT {cols} FROM {table}"))
        conn.execute(sa.text(f"DROP TABLE {table}"))
        conn.execute(sa.text(f"ALTER TABLE {table}_v4 RENAME TO {table}"))
        for index, columns in _V4_INDEXES[table]:
            conn.execute(sa.text(f"CREATE INDEX {index} ON {table} ({', '.join(columns)})"))


def _v7_rollout_lease_and_ingest_marks(conn: Connection) -> None:
    """The rollout loop's leader lease, and the ingest marks its followers leave.

    ``leases`` holds one row per lease (``rollout``: which server process runs the
    rollout loop), inserted here so that taking it is always an UPDATE (no insert
    race between servers).  ``ingest_marks`` counts, per project and dataset, the
    ingest batches a follower received; the leader reads it each second.
    """
    md = sa.MetaData()
    leases = sa.Table(
        "leases",
        md,
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("holder", sa.Text, nullable=False),
        sa.Column("term", sa.BigInteger, nullable=False),
        sa.Column("expires_at", sa.Double, nullable=False),
        sa.Column("renewed_at", sa.Double, nullable=False),
    )
    sa.Table(
        "ingest_marks",
        md,
        sa.Column("project_id", sa.Integer, primary_key=True),
        # "" when the batch held only feedback (its dataset is that of the joined call).
        sa.Column("dataset", sa.Text, primary_key=True),
        sa.Column("seq", sa.BigInteger, nullable=False),
    )
    md.create_all(conn)
    conn.execute(
        leases.insert().values(name="rollout", holder="", term=0, expires_at=0.0, renewed_at=0.0)
    )


#: Every schema version, oldest first.  Append only; never edit a shipped one.
MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "initial", _v1_initial),
    Migration(2, "prices table and per-route index", _v2_prices_and_route_index),
    Migration(3, "fine-tune launch log (per-project quota)", _v3_finetune_launches),
    Migration(
        4,
        "per-project record ids: calls and feedback keyed by (project_id, id)",
        _v4_per_project_ids,
    ),
    # v5 and v6 are taken by the rollout tables' migration (issue 10, point 5).
    Migration(7, "rollout leader lease and ingest marks", _v7_rollout_lease_and_ingest_marks),
)

LATEST = MIGRATIONS[-1].version

_versions = sa.Table(
    "schema_migrations",
    sa.MetaData(),
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("applied_at", sa.Double, nullable=False),
)


def current_version(db: Database) -> int:
    """Return the highest applied schema version (0 for an empty database).

    Args:
        db: the database.

    Returns:
        The version number.
    """
    with db.read() as conn:
        if not sa.inspect(conn).has_table("schema_migrations"):
            return 0
        value = conn.execute(sa.select(sa.func.max(_versions.c.version))).scalar()
    return int(value or 0)


def migrate(db: Database, target: int | None = None) -> list[int]:
    """Apply every migration newer than the database's version, in order.

    Args:
        db: the database to upgrade in place.
        target: stop after this version (tests use it to build old databases).

    Returns:
        The versions applied by this call (empty when already current).
    """
    applied: list[int] = []
    with db.write() as conn:
        if db.dialect == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_ID})
        _versions.create(conn, checkfirst=True)
    for migration in MIGRATIONS:
        if target is not None and migration.version > target:
            break
        with db.write() as conn:
            if db.dialect == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_ID})
            done = conn.execute(
                sa.select(_versions.c.version).where(_versions.c.version == migration.version)
            ).first()
            if done is not None:
                continue
            migration.apply(conn)
            conn.execute(
                _versions.insert().values(
                    version=migration.version, name=migration.name, applied_at=time.time()
                )
            )
            applied.append(migration.version)
    return applied
