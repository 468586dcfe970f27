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

import json
import time
from collections.abc import Callable
from typing import Any, NamedTuple

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


def _v5_rollout_tables_as_on_v4(md: sa.MetaData) -> None:
    """The rollout tables as ``metadata.create_all`` made them next to schema v4."""
    sa.Table(
        "rollouts",
        md,
        sa.Column("project_id", sa.Integer, primary_key=True),
        sa.Column("route", sa.Text, primary_key=True),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("policy", sa.Text, nullable=False),
        sa.Column("info", sa.Text, nullable=False),
        sa.Column("updated_at", sa.Double, nullable=False),
    )
    sa.Table(
        "rollout_events",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("project_id", sa.Integer, nullable=False),
        sa.Column("route", sa.Text, nullable=False),
        sa.Column("ts", sa.Double, nullable=False),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Index("ix_rollout_events_route", "project_id", "route", "id"),
    )
    sa.Table(
        "rollout_failures",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("project_id", sa.Integer, nullable=False),
        sa.Column("dataset", sa.Text, nullable=False),
        sa.Column("route", sa.Text, nullable=False),
        sa.Column("variant_model", sa.Text, nullable=False),
        sa.Column("call_id", sa.Text, nullable=False),
        sa.Column("ts", sa.Double, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("input_hash", sa.Text),
        sa.Column("input", sa.Text, nullable=False),
        sa.Column("kept_at", sa.Double, nullable=False),
        sa.UniqueConstraint("project_id", "call_id", name="uq_rollout_failures_call"),
        sa.Index("ix_rollout_failures_dataset", "project_id", "dataset"),
    )


def _v5_typed_rollouts(md: sa.MetaData, name: str) -> sa.Table:
    return sa.Table(
        name,
        md,
        sa.Column("project_id", sa.Integer, primary_key=True),
        sa.Column("route", sa.Text, primary_key=True),
        sa.Column("generation", sa.Integer, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("stages", sa.Text, nullable=False),
        sa.Column("stage_index", sa.Integer, nullable=False),
        sa.Column("control_model", sa.Text),
        sa.Column("variant_model", sa.Text),
        sa.Column("job_id", sa.Text),
        sa.Column("since", sa.Double, nullable=False),
        sa.Column("paused_from", sa.Text),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("base_variant_feedback", sa.Integer, nullable=False),
        sa.Column("base_control_feedback", sa.Integer, nullable=False),
        sa.Column("base_variant_calls", sa.Integer, nullable=False),
        sa.Column("base_control_calls", sa.Integer, nullable=False),
        sa.Column("policy", sa.Text, nullable=False),
        sa.Column("dataset", sa.Text, nullable=False),
        sa.Column("dataset_counts", sa.Text, nullable=False),
        sa.Column("base_model", sa.Text),
        sa.Column("backend", sa.Text),
        sa.Column("backend_url", sa.Text),
        sa.Column("webhook_url", sa.Text),
        sa.Column("webhook_secret", sa.Text),
        sa.Column("job", sa.Text),
        sa.Column("train_file", sa.Text),
        sa.Column("validation_file", sa.Text),
        sa.Column("variant_name", sa.Text),
        sa.Column("canary_since", sa.Double),
        sa.Column("rolled_back_variant", sa.Text),
        sa.Column("kept_failures", sa.Integer),
        sa.Column("test_split", sa.Text, nullable=False),
        sa.Column("updated_at", sa.Double, nullable=False),
    )


def _v5_typed_row(old: Any) -> dict[str, Any]:
    """One v4 ``rollouts`` row (state, policy and info as JSON) as typed v5 columns."""
    state = json.loads(old.state)
    info = json.loads(old.info)
    base = state.get("base") or {}
    files = info.get("files") or {}
    job = info.get("job")
    return {
        "project_id": old.project_id,
        "route": old.route,
        "generation": 1,
        "status": state["status"],
        "stages": json.dumps(list(state.get("stages") or [])),
        "stage_index": int(state.get("stage_index") or 0),
        "control_model": state.get("control_model") or info.get("control_model"),
        "variant_model": state.get("variant_model"),
        "job_id": state.get("job_id"),
        "since": float(state.get("since") or 0.0),
        "paused_from": state.get("paused_from"),
        "reason": str(state.get("reason") or ""),
        "version": int(state.get("version") or 0),
        "base_variant_feedback": int(base.get("variant_feedback") or 0),
        "base_control_feedback": int(base.get("control_feedback") or 0),
        "base_variant_calls": int(base.get("variant_calls") or 0),
        "base_control_calls": int(base.get("control_calls") or 0),
        "policy": old.policy,
        "dataset": str(info.get("dataset") or old.route),
        "dataset_counts": json.dumps(info.get("dataset_counts") or {}),
        "base_model": info.get("base_model"),
        "backend": info.get("backend"),
        "backend_url": info.get("backend_url"),
        "webhook_url": info.get("webhook_url"),
        "webhook_secret": info.get("webhook_secret"),
        "job": json.dumps(job) if job is not None else None,
        "train_file": files.get("train"),
        "validation_file": files.get("validation"),
        "variant_name": info.get("variant_name"),
        "canary_since": info.get("canary_since"),
        "rolled_back_variant": info.get("rolled_back_variant"),
        "kept_failures": info.get("kept_failures"),
        "test_split": json.dumps(info.get("test") or []),
        "updated_at": old.updated_at,
    }


def _v5_rollouts(conn: Connection) -> None:
    """The rollout tables join the versioned schema, and a rollout's state is typed.

    Until v4 the rollout store made its three tables with ``create_all`` and kept
    part of its state in a JSON ``info`` column.  Here they are created as they
    were when missing (a fresh database), then ``rollouts`` is rebuilt with one
    column per field, each existing row converted (one transaction).
    """
    md = sa.MetaData()
    _v5_rollout_tables_as_on_v4(md)
    md.create_all(conn, checkfirst=True)
    old = list(conn.execute(sa.text("SELECT * FROM rollouts")))
    new = _v5_typed_rollouts(sa.MetaData(), "rollouts_v5")
    new.create(conn)
    rows = [_v5_typed_row(r) for r in old]
    if rows:
        conn.execute(new.insert(), rows)
    conn.execute(sa.text("DROP TABLE rollouts"))
    conn.execute(sa.text("ALTER TABLE rollouts_v5 RENAME TO rollouts"))


def _v6_evidence_aggregates(conn: Connection) -> None:
    """Per-window, per-arm evidence counted at ingest (see ``store/aggregates.py``).

    DDL only: a rollout already in canary when the server upgrades gets its
    aggregates rebuilt from its calls the first time its evidence is read.
    """
    md = sa.MetaData()
    key = ("project_id", "route", "generation", "window_start", "arm")

    def keyed(name: str, *columns: sa.Column[Any], extra: tuple[str, ...] = ()) -> None:
        sa.Table(
            name,
            md,
            sa.Column("project_id", sa.Integer, nullable=False),
            sa.Column("route", sa.Text, nullable=False),
            sa.Column("generation", sa.Integer, nullable=False),
            sa.Column("window_start", sa.Double, nullable=False),
            sa.Column("arm", sa.Text, nullable=False),
            *columns,
            sa.PrimaryKeyConstraint(*key, *extra),
        )

    sa.Table(
        "rollout_windows",
        md,
        sa.Column("project_id", sa.Integer, primary_key=True),
        sa.Column("route", sa.Text, primary_key=True),
        sa.Column("generation", sa.Integer, primary_key=True),
        sa.Column("start_ts", sa.Double, primary_key=True),
    )
    counts = ("calls", "errors", "feedback", "successes", "units", "unitless")
    keyed(
        "rollout_arm_stats",
        *(sa.Column(c, sa.BigInteger, nullable=False) for c in counts),
        sa.Column("latency_min", sa.Double),
        sa.Column("latency_max", sa.Double),
    )
    moments = ("tok_in", "tok_out", "tok_in2", "tok_inout", "tok_out2")
    keyed(
        "rollout_cost_stats",
        sa.Column("model", sa.Text, nullable=False),
        sa.Column("n", sa.BigInteger, nullable=False),
        *(sa.Column(c, sa.Double, nullable=False) for c in moments),
        extra=("model",),
    )
    keyed(
        "rollout_latency",
        sa.Column("bucket", sa.Integer, nullable=False),
        sa.Column("n", sa.BigInteger, nullable=False),
        extra=("bucket",),
    )
    keyed("rollout_units", sa.Column("unit", sa.Text, nullable=False), extra=("unit",))
    md.create_all(conn)


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
    Migration(5, "rollout tables under the runner; typed rollout state", _v5_rollouts),
    Migration(6, "rollout evidence aggregated at ingest", _v6_evidence_aggregates),
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
