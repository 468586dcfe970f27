"""The current database schema (SQLAlchemy Core tables, no ORM).

Queries use these tables.  The DDL that creates them lives in
:mod:`._migrations`, frozen per version, so an old database is upgraded by
replaying the migrations it has not seen; a test checks that the migrated
schema equals this one.

Times are epoch seconds (``Double``) so range filters and ordering work the
same on SQLite and PostgreSQL.  The full record is kept as JSON text next to
the columns that are filtered, grouped or joined on.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

schema_migrations = sa.Table(
    "schema_migrations",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("applied_at", sa.Double, nullable=False),
)

projects = sa.Table(
    "projects",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.Text, nullable=False, unique=True),
    sa.Column("created_at", sa.Double, nullable=False),
    # Bumped on every route change; it is the config's "version".
    sa.Column("config_version", sa.Integer, nullable=False),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id"), nullable=False),
    sa.Column("key_hash", sa.Text, nullable=False, unique=True),
    sa.Column("prefix", sa.Text, nullable=False),
    sa.Column("scope", sa.Text, nullable=False),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("revoked_at", sa.Double, nullable=True),
)

calls = sa.Table(
    "calls",
    metadata,
    # Record ids are unique per project (the primary key is (project_id, id)), so
    # one project's ids neither block nor reveal another's.
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
    # Denormalised from the latest joined feedback (by ts, then id).
    sa.Column("outcome", sa.Text),
    sa.Column("score", sa.Double),
    sa.Column("feedback_count", sa.Integer, nullable=False),
    sa.Column("received_at", sa.Double, nullable=False),
    sa.Column("record", sa.Text, nullable=False),
    sa.PrimaryKeyConstraint("project_id", "id"),
    sa.Index("ix_calls_dataset_ts", "project_id", "dataset", "ts", "id"),
    sa.Index("ix_calls_response_id", "project_id", "response_id"),
    sa.Index("ix_calls_route", "project_id", "route", "variant", "ts"),
)

feedback = sa.Table(
    "feedback",
    metadata,
    sa.Column("id", sa.Text, nullable=False),
    sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id"), nullable=False),
    sa.Column("ts", sa.Double, nullable=False),
    sa.Column("target", sa.Text, nullable=False),
    # NULL until the call it targets has arrived.
    sa.Column("call_id", sa.Text),
    sa.Column("outcome", sa.Text, nullable=False),
    sa.Column("score", sa.Double),
    sa.Column("received_at", sa.Double, nullable=False),
    sa.Column("record", sa.Text, nullable=False),
    sa.PrimaryKeyConstraint("project_id", "id"),
    sa.Index("ix_feedback_target", "project_id", "target"),
    sa.Index("ix_feedback_call", "project_id", "call_id"),
)

routes = sa.Table(
    "routes",
    metadata,
    sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id"), primary_key=True),
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("updated_at", sa.Double, nullable=False),
)

prices = sa.Table(
    "prices",
    metadata,
    sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id"), primary_key=True),
    sa.Column("model", sa.Text, primary_key=True),
    sa.Column("input_per_mtok", sa.Double, nullable=False),
    sa.Column("output_per_mtok", sa.Double, nullable=False),
    sa.Column("updated_at", sa.Double, nullable=False),
)

finetune_launches = sa.Table(
    "finetune_launches",
    metadata,
    # One row per fine-tune launch that reached a backend: the per-project quota
    # counts them over the last 24 hours.
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id"), nullable=False),
    sa.Column("backend", sa.Text, nullable=False),
    sa.Column("route", sa.Text, nullable=False),
    sa.Column("ts", sa.Double, nullable=False),
    sa.Index("ix_finetune_launches_project_ts", "project_id", "ts"),
)

leases = sa.Table(
    "leases",
    metadata,
    # One row per lease ("rollout": which server process runs the rollout loop).
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("holder", sa.Text, nullable=False),
    sa.Column("term", sa.BigInteger, nullable=False),
    sa.Column("expires_at", sa.Double, nullable=False),
    sa.Column("renewed_at", sa.Double, nullable=False),
)

ingest_marks = sa.Table(
    "ingest_marks",
    metadata,
    # Ingest batches a follower received per project and dataset ("": feedback only);
    # the leader reads them each second.
    sa.Column("project_id", sa.Integer, primary_key=True),
    sa.Column("dataset", sa.Text, primary_key=True),
    sa.Column("seq", sa.BigInteger, nullable=False),
)

#: Tables holding a project's data, children first (for cleanup in tests).
DATA_TABLES: tuple[sa.Table, ...] = (
    finetune_launches, prices, routes, feedback, calls, api_keys, projects,
)  # fmt: skip
