"""The current database schema (SQLAlchemy Core tables, no ORM).

Queries use these tables.  The DDL that creates them lives in
:mod:`.migrations`, frozen per version, so an old database is upgraded by
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

rollouts = sa.Table(
    "rollouts",
    metadata,
    # One row per route: its latest rollout, every field typed (no free-form bag).
    sa.Column("project_id", sa.Integer, primary_key=True),
    sa.Column("route", sa.Text, primary_key=True),
    # Incremented by each new fine-tune of the route: evidence aggregates are per generation.
    sa.Column("generation", sa.Integer, nullable=False),
    # The engine's state (RolloutState), one column per field.
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("stages", sa.Text, nullable=False),  # JSON list of shares
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
    # The user's policy block, validated (Policy.to_json).
    sa.Column("policy", sa.Text, nullable=False),
    # What the service keeps about the launch and the canary.
    sa.Column("dataset", sa.Text, nullable=False),
    sa.Column("dataset_counts", sa.Text, nullable=False),  # JSON object of counts
    sa.Column("base_model", sa.Text),
    sa.Column("backend", sa.Text),
    sa.Column("backend_url", sa.Text),
    sa.Column("webhook_url", sa.Text),
    sa.Column("webhook_secret", sa.Text),
    sa.Column("job", sa.Text),  # JobInfo.to_json, the last snapshot
    sa.Column("train_file", sa.Text),
    sa.Column("validation_file", sa.Text),
    sa.Column("variant_name", sa.Text),
    sa.Column("canary_since", sa.Double),
    sa.Column("rolled_back_variant", sa.Text),
    sa.Column("kept_failures", sa.Integer),
    sa.Column("test_split", sa.Text, nullable=False),  # JSON list of {input, expected}
    sa.Column("updated_at", sa.Double, nullable=False),
)

rollout_events = sa.Table(
    "rollout_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("project_id", sa.Integer, nullable=False),
    sa.Column("route", sa.Text, nullable=False),
    sa.Column("ts", sa.Double, nullable=False),
    sa.Column("action", sa.Text, nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Index("ix_rollout_events_route", "project_id", "route", "id"),
)

rollout_failures = sa.Table(
    "rollout_failures",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("project_id", sa.Integer, nullable=False),
    sa.Column("dataset", sa.Text, nullable=False),
    sa.Column("route", sa.Text, nullable=False),
    sa.Column("variant_model", sa.Text, nullable=False),
    sa.Column("call_id", sa.Text, nullable=False),
    sa.Column("ts", sa.Double, nullable=False),
    # "failure" (feedback), "error" (the call failed) or "fallback" (control answered).
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("input_hash", sa.Text),
    sa.Column("input", sa.Text, nullable=False),
    sa.Column("kept_at", sa.Double, nullable=False),
    sa.UniqueConstraint("project_id", "call_id", name="uq_rollout_failures_call"),
    sa.Index("ix_rollout_failures_dataset", "project_id", "dataset"),
)

# -- evidence aggregates (see .aggregates) -------------------------------------
# A rollout's calls are counted at ingest into windows: a window starts at each
# time the engine reads from (the canary's start, each stage's sample-ratio
# window), and a call belongs to the latest window starting at or before its ts.

_WINDOW_KEY = ("project_id", "route", "generation", "window_start", "arm")

rollout_windows = sa.Table(
    "rollout_windows",
    metadata,
    sa.Column("project_id", sa.Integer, primary_key=True),
    sa.Column("route", sa.Text, primary_key=True),
    sa.Column("generation", sa.Integer, primary_key=True),
    sa.Column("start_ts", sa.Double, primary_key=True),
)

rollout_arm_stats = sa.Table(
    "rollout_arm_stats",
    metadata,
    sa.Column("project_id", sa.Integer, nullable=False),
    sa.Column("route", sa.Text, nullable=False),
    sa.Column("generation", sa.Integer, nullable=False),
    sa.Column("window_start", sa.Double, nullable=False),
    sa.Column("arm", sa.Text, nullable=False),
    sa.Column("calls", sa.BigInteger, nullable=False),
    # Failed calls (errors and fallbacks to control).
    sa.Column("errors", sa.BigInteger, nullable=False),
    # Successful calls whose latest feedback is success or failure, and the successes.
    sa.Column("feedback", sa.BigInteger, nullable=False),
    sa.Column("successes", sa.BigInteger, nullable=False),
    # Distinct assignment units (rows of rollout_units) and calls with no unit.
    sa.Column("units", sa.BigInteger, nullable=False),
    sa.Column("unitless", sa.BigInteger, nullable=False),
    sa.Column("latency_min", sa.Double),
    sa.Column("latency_max", sa.Double),
    sa.PrimaryKeyConstraint(*_WINDOW_KEY),
)

rollout_cost_stats = sa.Table(
    "rollout_cost_stats",
    metadata,
    # Token moments per model, so cost and its variance follow the price table as it
    # is when the engine reads them: sum(cost) and sum(cost^2) are linear in these.
    sa.Column("project_id", sa.Integer, nullable=False),
    sa.Column("route", sa.Text, nullable=False),
    sa.Column("generation", sa.Integer, nullable=False),
    sa.Column("window_start", sa.Double, nullable=False),
    sa.Column("arm", sa.Text, nullable=False),
    sa.Column("model", sa.Text, nullable=False),
    sa.Column("n", sa.BigInteger, nullable=False),
    sa.Column("tok_in", sa.Double, nullable=False),
    sa.Column("tok_out", sa.Double, nullable=False),
    sa.Column("tok_in2", sa.Double, nullable=False),
    sa.Column("tok_inout", sa.Double, nullable=False),
    sa.Column("tok_out2", sa.Double, nullable=False),
    sa.PrimaryKeyConstraint(*_WINDOW_KEY, "model"),
)

rollout_latency = sa.Table(
    "rollout_latency",
    metadata,
    # Successful calls per log-scale latency bucket (logos_shift.server.stats.sketch).
    sa.Column("project_id", sa.Integer, nullable=False),
    sa.Column("route", sa.Text, nullable=False),
    sa.Column("generation", sa.Integer, nullable=False),
    sa.Column("window_start", sa.Double, nullable=False),
    sa.Column("arm", sa.Text, nullable=False),
    sa.Column("bucket", sa.Integer, nullable=False),
    sa.Column("n", sa.BigInteger, nullable=False),
    sa.PrimaryKeyConstraint(*_WINDOW_KEY, "bucket"),
)

rollout_units = sa.Table(
    "rollout_units",
    metadata,
    # The distinct units seen per arm in the latest window only (older ones are dropped).
    sa.Column("project_id", sa.Integer, nullable=False),
    sa.Column("route", sa.Text, nullable=False),
    sa.Column("generation", sa.Integer, nullable=False),
    sa.Column("window_start", sa.Double, nullable=False),
    sa.Column("arm", sa.Text, nullable=False),
    sa.Column("unit", sa.Text, nullable=False),
    sa.PrimaryKeyConstraint(*_WINDOW_KEY, "unit"),
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
    rollout_units, rollout_latency, rollout_cost_stats, rollout_arm_stats, rollout_windows,
    rollout_failures, rollout_events, rollouts, ingest_marks,
    finetune_launches, prices, routes, feedback, calls, api_keys, projects,
)  # fmt: skip
