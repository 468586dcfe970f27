"""Leases (which server process runs the rollout loop) and ingest marks.

Both tables are created by migration 7.  Lease times are read from the
database's own clock, so servers on several machines agree on when a lease
expires even if their clocks drift apart.
"""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .db import Database
from .schema import ingest_marks, leases

__all__ = [
    "db_now",
    "holds",
    "ingest_marks",
    "leases",
    "mark_ingest",
    "read_marks",
    "release",
    "take",
]


def db_now(conn: Connection) -> float:
    """Return the database server's time in Unix seconds.

    Args:
        conn: a connection.

    Returns:
        The time.
    """
    if conn.dialect.name == "postgresql":
        query = "SELECT extract(epoch from clock_timestamp())"
    else:
        query = "SELECT (julianday('now') - 2440587.5) * 86400.0"
    return float(conn.exec_driver_sql(query).scalar_one())


def take(db: Database, name: str, holder: str, lease_s: float) -> int | None:
    """Take or renew a lease: it is ``holder``'s until ``lease_s`` from now.

    A lease another holder renewed less than its length ago is left alone.

    Args:
        db: the database.
        name: the lease (``"rollout"``).
        holder: who asks (unique per process).
        lease_s: the lease's length.

    Returns:
        The lease's term (it grows by one each time the lease changes hands),
        or None when another holder has it.
    """
    query = (
        sa.select(leases.c.holder, leases.c.term, leases.c.expires_at)
        .where(leases.c.name == name)
        .with_for_update()
    )
    with db.write() as conn:
        now = db_now(conn)
        row = conn.execute(query).first()
        if row is None:  # migration 7 inserts "rollout"; any other name starts here
            conn.execute(
                db.insert(leases)
                .values(name=name, holder="", term=0, expires_at=0.0, renewed_at=0.0)
                .on_conflict_do_nothing()
            )
            row = conn.execute(query).one()
        if row.holder != holder and row.expires_at > now:
            return None
        term = int(row.term) if row.holder == holder and row.expires_at > now else row.term + 1
        conn.execute(
            leases.update()
            .where(leases.c.name == name)
            .values(holder=holder, term=term, expires_at=now + lease_s, renewed_at=now)
        )
    return int(term)


def holds(conn: Connection, name: str, holder: str, term: int) -> bool:
    """Say whether ``holder`` still has the lease in ``term`` (inside a transaction).

    Args:
        conn: the connection of the transaction to fence.
        name: the lease.
        holder: the holder.
        term: the term it took the lease in.

    Returns:
        True when the lease is still the holder's and unexpired.
    """
    now = db_now(conn)
    row = conn.execute(
        sa.select(leases.c.term)
        .where(
            leases.c.name == name,
            leases.c.holder == holder,
            leases.c.term == term,
            leases.c.expires_at > now,
        )
        .with_for_update()
    ).first()
    return row is not None


def release(db: Database, name: str, holder: str) -> None:
    """Give a lease up at once (a graceful stop: another process takes over now).

    Args:
        db: the database.
        name: the lease.
        holder: its holder (nothing happens when it is another's).
    """
    with db.write() as conn:
        conn.execute(
            leases.update()
            .where(leases.c.name == name, leases.c.holder == holder)
            .values(expires_at=0.0)
        )


def mark_ingest(db: Database, keys: Iterable[tuple[int, str]]) -> None:
    """Count one ingest for each ``(project_id, dataset)`` (``""``: feedback only).

    Args:
        db: the database.
        keys: the keys.
    """
    rows = [{"project_id": p, "dataset": d, "seq": 1} for p, d in sorted(set(keys))]
    if not rows:
        return
    ins = db.insert(ingest_marks)
    stmt = ins.on_conflict_do_update(
        index_elements=[ingest_marks.c.project_id, ingest_marks.c.dataset],
        set_={"seq": ingest_marks.c.seq + 1},
    )
    with db.write() as conn:
        for row in rows:
            conn.execute(stmt, row)


def read_marks(db: Database) -> dict[tuple[int, str], int]:
    """Return every ingest mark's count.

    Args:
        db: the database.

    Returns:
        ``{(project_id, dataset): seq}``.
    """
    with db.read() as conn:
        rows = conn.execute(
            sa.select(ingest_marks.c.project_id, ingest_marks.c.dataset, ingest_marks.c.seq)
        )
        return {(int(p), str(d)): int(s) for p, d, s in rows}
