"""The versioned migration runner: fresh install, in-place upgrade, idempotency."""

from __future__ import annotations

import time

import sqlalchemy as sa

from logos_shift.server import Database
from logos_shift.server.store.migrations import LATEST, MIGRATIONS, current_version, migrate
from logos_shift.server.store.schema import metadata


def _columns(db: Database) -> dict[str, set[str]]:
    with db.read() as conn:
        insp = sa.inspect(conn)
        return {t: {c["name"] for c in insp.get_columns(t)} for t in insp.get_table_names()}


def test_fresh_database_gets_the_current_schema(db: Database) -> None:
    """Migrating an empty database applies every version and yields exactly the query schema."""
    assert current_version(db) == 0
    assert migrate(db) == [m.version for m in MIGRATIONS]
    assert current_version(db) == LATEST
    expected = {t.name: {c.name for c in t.columns} for t in metadata.sorted_tables}
    assert _columns(db) == expected


def test_migrate_is_idempotent(db: Database) -> None:
    """Running the migrations again applies nothing and changes nothing."""
    migrate(db)
    before = _columns(db)
    assert migrate(db) == []
    assert _columns(db) == before


def test_v1_database_upgrades_in_place_keeping_its_data(db: Database) -> None:
    """A database left at schema v1 with data is upgraded to the latest version, data intact."""
    assert migrate(db, target=1) == [1]
    assert "prices" not in _columns(db)
    with db.write() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO projects (name, created_at, config_version) VALUES ('old', :t, 3)"
            ),
            {"t": time.time()},
        )
        conn.execute(
            sa.text(
                "INSERT INTO calls (id, project_id, ts, dataset, fallback, is_error, "
                "feedback_count, received_at, record, route, variant) "
                "VALUES ('c1', 1, 1.0, 'd', false, false, 0, 1.0, '{}', 'r', 'v')"
            )
        )
    assert migrate(db) == [v for v in range(2, LATEST + 1)]
    assert current_version(db) == LATEST
    with db.read() as conn:
        assert conn.execute(sa.text("SELECT config_version FROM projects")).scalar() == 3
        assert conn.execute(sa.text("SELECT id FROM calls")).scalar() == "c1"
        assert conn.execute(sa.text("SELECT COUNT(*) FROM prices")).scalar() == 0
        indexes = {i["name"] for i in sa.inspect(conn).get_indexes("calls")}
    assert "ix_calls_route" in indexes


def _primary_keys(db: Database) -> dict[str, list[str]]:
    with db.read() as conn:
        insp = sa.inspect(conn)
        return {
            t: list(insp.get_pk_constraint(t)["constrained_columns"])
            for t in insp.get_table_names()
        }


def test_migrated_primary_keys_equal_the_query_schema(db: Database) -> None:
    """Every table's primary key after migrating is the one the queries assume."""
    migrate(db)
    expected = {t.name: [c.name for c in t.primary_key.columns] for t in metadata.sorted_tables}
    assert _primary_keys(db) == expected


def test_per_project_ids_upgrade_keeps_calls_feedback_and_joins(db: Database) -> None:
    """A database from before per-project ids keeps every call, feedback and join; afterwards
    another project may store the same ids."""
    from logos_shift.server.store.ingest import ingest
    from logos_shift.server.store.keys import ensure_project

    before = next(m.version for m in MIGRATIONS if m.name.startswith("per-project record ids"))
    migrate(db, target=before - 1)
    acme = ensure_project(db, "acme")
    with db.write() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO calls (id, project_id, ts, dataset, fallback, is_error, outcome, "
                "score, feedback_count, received_at, record, route, variant, response_id) "
                "VALUES ('c1', :p, 1.0, 'd', false, false, 'success', 1.0, 1, 1.0, "
                "'{\"id\": \"c1\"}', 'r', 'v', 'resp-1')"
            ),
            {"p": acme},
        )
        conn.execute(
            sa.text(
                "INSERT INTO feedback (id, project_id, ts, target, call_id, outcome, score, "
                "received_at, record) VALUES ('f1', :p, 2.0, 'resp-1', 'c1', 'success', 1.0, "
                "2.0, '{}')"
            ),
            {"p": acme},
        )
    assert migrate(db) == [v for v in range(before, LATEST + 1)]
    assert _primary_keys(db)["calls"] == ["project_id", "id"]
    assert _primary_keys(db)["feedback"] == ["project_id", "id"]
    with db.read() as conn:
        call = conn.execute(sa.text("SELECT id, record, outcome, feedback_count FROM calls")).one()
        fb = conn.execute(sa.text("SELECT id, call_id, target FROM feedback")).one()
        indexes = {i["name"] for i in sa.inspect(conn).get_indexes("calls")}
    assert tuple(call) == ("c1", '{"id": "c1"}', "success", 1)
    assert tuple(fb) == ("f1", "c1", "resp-1")
    assert {"ix_calls_dataset_ts", "ix_calls_response_id", "ix_calls_route"} <= indexes
    other = ensure_project(db, "other")
    rec = {"schema": 1, "type": "call", "id": "c1", "ts": "2026-11-23T21:00:00Z"}
    assert ingest(db, other, [rec]).results[0]["status"] == "ok"
    assert ingest(db, acme, [rec]).results[0]["status"] == "duplicate"


def _main_v4_rollout_tables(db: Database) -> None:
    """Build the rollout tables as today's main makes them: ``create_all`` next to v4."""
    md = sa.MetaData()
    sa.Table(
        "rollouts", md,
        sa.Column("project_id", sa.Integer, primary_key=True),
        sa.Column("route", sa.Text, primary_key=True),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("policy", sa.Text, nullable=False),
        sa.Column("info", sa.Text, nullable=False),
        sa.Column("updated_at", sa.Double, nullable=False),
    )  # fmt: skip
    sa.Table(
        "rollout_events", md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("project_id", sa.Integer, nullable=False),
        sa.Column("route", sa.Text, nullable=False),
        sa.Column("ts", sa.Double, nullable=False),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Index("ix_rollout_events_route", "project_id", "route", "id"),
    )  # fmt: skip
    sa.Table(
        "rollout_failures", md,
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
    )  # fmt: skip
    with db.write() as conn:
        md.create_all(conn)


def test_main_v4_database_with_a_rollout_upgrades_to_typed_state(db: Database) -> None:
    """A database as main makes it today (v4 + create_all rollout tables, a canary running,
    its events and kept failures) upgrades in place: the rollout loads typed, same values."""
    import json

    from logos_shift.server.rollout.types import Status
    from logos_shift.server.store import rollouts
    from logos_shift.server.store.keys import ensure_project

    assert migrate(db, target=4) == [1, 2, 3, 4]
    _main_v4_rollout_tables(db)
    acme = ensure_project(db, "acme")
    state = {
        "route": "support", "status": "canary", "stages": [0.1, 0.5, 1.0], "stage_index": 1,
        "control_model": "gpt-4o", "variant_model": "ft:gpt-4o-mini:acme", "job_id": "ftjob-1",
        "since": 1000.0, "paused_from": None, "reason": "advancing", "version": 3,
        "base": {"variant_feedback": 20, "control_feedback": 180, "variant_calls": 22,
                 "control_calls": 190},
    }  # fmt: skip
    info = {
        "dataset": "support", "dataset_counts": {"train": 32}, "base_model": "gpt-4o-mini",
        "backend": "fake", "backend_url": None, "webhook_url": "http://hook.example/x",
        "webhook_secret": "whsec_1", "control_model": "gpt-4o",
        "test": [{"input": {"messages": []}, "expected": "hi"}],
        "job": {"id": "ftjob-1", "status": "succeeded"},
        "files": {"train": "file-1", "validation": None}, "variant_name": "ft-ftjob-1",
        "canary_since": 900.0,
    }  # fmt: skip
    with db.write() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO rollouts (project_id, route, state, policy, info, updated_at) "
                "VALUES (:p, 'support', :s, :pol, :i, 1.0)"
            ),
            {"p": acme, "s": json.dumps(state), "pol": json.dumps({"min_per_arm": 10}),
             "i": json.dumps(info)},
        )  # fmt: skip
        conn.execute(
            sa.text(
                "INSERT INTO rollout_events (project_id, route, ts, action, body) "
                "VALUES (:p, 'support', 1.0, 'advance', '{\"action\": \"advance\"}')"
            ),
            {"p": acme},
        )
    assert migrate(db) == [v for v in range(5, LATEST + 1)]
    assert _columns(db) == {t.name: {c.name for c in t.columns} for t in metadata.sorted_tables}
    row = rollouts.load(db, acme, "support")
    assert row is not None
    assert row.state.status == Status.CANARY
    assert row.state.to_json() == state
    assert row.policy.min_per_arm == 10
    assert (row.dataset, row.variant_name, row.canary_since) == ("support", "ft-ftjob-1", 900.0)
    assert (row.webhook_secret, row.train_file, row.generation) == ("whsec_1", "file-1", 1)
    assert row.test_split == info["test"]
    assert row.job == info["job"]
    assert rollouts.active(db) == [(acme, "support")]
    assert [e["action"] for e in rollouts.list_events(db, acme, "support")] == ["advance"]
    # Saved again, the row round-trips; a new rollout of the route takes the next generation.
    rollouts.save(db, acme, row)
    again = rollouts.load(db, acme, "support")
    assert again == row
    fresh = rollouts.RolloutRow(row.state, row.policy, dataset="support")
    rollouts.save(db, acme, fresh)
    assert fresh.generation == 2
