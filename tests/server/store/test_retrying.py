"""Database.retrying: a transaction PostgreSQL aborts as a deadlock victim runs again."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa

from logos_shift.server.store.db import Database


@pytest.mark.postgres
def test_a_deadlock_victim_is_run_again_and_both_transactions_commit(postgres_url: str) -> None:
    """Two transactions locking two rows in opposite orders deadlock; PostgreSQL aborts one,
    ``retrying`` runs it again, and both writes are there at the end."""
    db = Database(postgres_url)
    with db.write() as conn:
        conn.execute(sa.text("DROP TABLE IF EXISTS t_retry"))
        conn.execute(sa.text("CREATE TABLE t_retry (k int PRIMARY KEY, v int NOT NULL)"))
        conn.execute(sa.text("INSERT INTO t_retry VALUES (1, 0), (2, 0)"))
    both_hold_one = threading.Barrier(2, timeout=10)
    runs = {1: 0, 2: 0}

    def attempt(first: int, second: int) -> None:
        runs[first] += 1
        with db.write() as conn:
            conn.execute(sa.text("UPDATE t_retry SET v = v + 1 WHERE k = :k"), {"k": first})
            if runs[first] == 1:
                both_hold_one.wait()  # only the first run of each races into the deadlock
            conn.execute(sa.text("UPDATE t_retry SET v = v + 1 WHERE k = :k"), {"k": second})

    errors: list[BaseException] = []

    def run(first: int, second: int) -> None:
        try:
            db.retrying(lambda: attempt(first, second))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(1, 2)), threading.Thread(target=run, args=(2, 1))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert sorted(runs.values()) == [1, 2]  # exactly one was the victim, and ran again
    with db.read() as conn:
        assert dict(conn.execute(sa.text("SELECT k, v FROM t_retry")).all()) == {1: 2, 2: 2}
    db.dispose()


def test_a_nested_attempt_runs_once_and_other_errors_pass_through(tmp_path: object) -> None:
    """Inside another write the attempt runs once (the outer transaction is the one to
    retry), and an error that is not a deadlock is raised at the first try."""
    db = Database(f"sqlite:///{tmp_path}/x.db")
    calls = []
    with db.write():
        assert db.retrying(lambda: calls.append(1) or "done") == "done"
    assert calls == [1]

    def failing() -> None:
        calls.append(2)
        with db.write() as conn:
            conn.execute(sa.text("SELECT * FROM no_such_table"))

    with pytest.raises(sa.exc.OperationalError):
        db.retrying(failing)
    assert calls == [1, 2]
    db.dispose()
