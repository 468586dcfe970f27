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
