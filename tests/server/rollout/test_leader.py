"""The rollout loop's leader lease: one holder at a time, takeover, fencing."""

from __future__ import annotations

import time

import pytest

from logos_shift.server import Database
from logos_shift.server.rollout.leader import Leader, LostLease
from logos_shift.server.store.migrations import migrate


@pytest.fixture
def db(db_url: str) -> Database:
    """A migrated database."""
    d = Database(db_url)
    migrate(d)
    return d


def test_one_process_leads_at_a_time(db: Database) -> None:
    """Of two contenders the first leads; the second follows while the lease is renewed."""
    a, b = Leader(db, lease_s=30.0), Leader(db, lease_s=30.0)
    try:
        assert a.beat() is True
        assert b.beat() is False
        assert a.beat() is True  # a renewal keeps the term
        assert a.is_leader
        assert not b.is_leader
    finally:
        a.stop()
        b.stop()
        db.dispose()


def test_a_released_lease_is_taken_at_once_in_a_new_term(db: Database) -> None:
    """A graceful stop releases the lease: the next contender takes it, one term later."""
    a, b = Leader(db, lease_s=30.0), Leader(db, lease_s=30.0)
    try:
        a.beat()
        term = a.term
        a.stop()
        assert b.beat() is True
        assert b.term == (term or 0) + 1
    finally:
        b.stop()
        db.dispose()


def test_an_expired_lease_is_taken_over(db: Database) -> None:
    """A leader that stops renewing (killed) loses the lease once it expires."""
    a, b = Leader(db, lease_s=0.5), Leader(db, lease_s=0.5)
    try:
        assert a.beat()
        deadline = time.monotonic() + 10
        while not b.beat():
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert b.is_leader
    finally:
        b.stop()
        db.dispose()


def test_a_deposed_leader_cannot_commit(db: Database) -> None:
    """The fence inside a transaction refuses a leader whose lease another process took."""
    a, b = Leader(db, lease_s=0.5), Leader(db, lease_s=0.5)
    try:
        assert a.beat()
        with db.write() as conn:
            a.fence(conn)  # still the leader: passes
        deadline = time.monotonic() + 10
        while not b.beat():
            assert time.monotonic() < deadline
            time.sleep(0.1)
        with pytest.raises(LostLease), db.write() as conn:
            a.fence(conn)
        assert a.term is None
    finally:
        b.stop()
        db.dispose()
