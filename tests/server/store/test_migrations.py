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
