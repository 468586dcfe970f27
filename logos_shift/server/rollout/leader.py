"""One leader among the server processes of a database: the one that runs the rollout loop.

A lease row in the database (``leases``, the same on SQLite and PostgreSQL):
the leader renews it every third of its length; another process takes it once
it has not been renewed for a whole length, so a leader killed with SIGKILL is
replaced within ``4/3`` of a lease.  Lease times come from the database's
clock.  A process that loses the lease (a long pause, a lost connection) may
still believe it leads for a moment: every automatic transition therefore
checks the lease *inside its own transaction* (:meth:`Leader.fence`), so a
transition commits only under a live lease and happens exactly once.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time

import sqlalchemy.exc
from sqlalchemy.engine import Connection

from logos_shift.server.store import leases as _leases
from logos_shift.server.store.db import Database

__all__ = ["Leader", "LostLease"]

logger = logging.getLogger("logos_shift.server.rollout")


class LostLease(RuntimeError):
    """The process no longer holds the lease: the transition it attempted is not committed."""


class Leader:
    """The lease of one process, renewed by a heartbeat thread.

    Args:
        db: the database.
        lease_s: the lease's length (seconds); renewed every third of it.
        name: the lease's name.

    Example:
        >>> leader = Leader(db, lease_s=10.0)  # doctest: +SKIP
        >>> leader.start(); leader.is_leader  # doctest: +SKIP
    """

    def __init__(self, db: Database, *, lease_s: float = 10.0, name: str = "rollout") -> None:
        self.db = db
        self.lease_s = lease_s
        self.name = name
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self.term: int | None = None
        self._valid_until = 0.0  # monotonic; conservative (measured from before the write)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._changed = threading.Event()

    @property
    def is_leader(self) -> bool:
        """Whether this process holds the lease now (as far as it knows)."""
        return self.term is not None and time.monotonic() < self._valid_until

    def beat(self) -> bool:
        """Take or renew the lease once.

        Returns:
            Whether this process leads after the attempt.
        """
        was = self.is_leader
        started = time.monotonic()
        try:
            term = _leases.take(self.db, self.name, self.holder, self.lease_s)
        except Exception:  # a lost database: keep what is left of the lease, try again
            logger.warning("could not renew the rollout lease", exc_info=True)
            term = self.term if self.is_leader else None
        else:
            if term is not None:
                self._valid_until = started + self.lease_s
        self.term = term
        now = self.is_leader
        if now != was:
            logger.info(
                "rollout loop: %s", "this process leads" if now else "this process follows",
                extra={"holder": self.holder, "term": term},
            )  # fmt: skip
            self._changed.set()
        return now

    def fence(self, conn: Connection) -> None:
        """Check, inside a transaction, that the lease is still this process's.

        Args:
            conn: the transaction's connection.

        Raises:
            LostLease: another process leads (the transaction must not commit).
        """
        if self.term is None or not _leases.holds(conn, self.name, self.holder, self.term):
            self.term = None
            raise LostLease("this server process no longer holds the rollout lease")

    def start(self) -> None:
        """Start the heartbeat thread (idempotent); the first attempt runs before it returns."""
        if self._thread is not None:
            return
        self.beat()
        self._thread = threading.Thread(target=self._run, daemon=True, name="logos-rollout-lease")
        self._thread.start()

    def wait_changed(self, timeout: float) -> bool:
        """Wait until leadership changes (either way) or ``timeout`` passes.

        Args:
            timeout: seconds.

        Returns:
            Whether it changed.
        """
        changed = self._changed.wait(timeout)
        self._changed.clear()
        return changed

    def _run(self) -> None:
        while not self._stop.wait(self.lease_s / 3):
            self.beat()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the heartbeat and release the lease, so another process takes over at once.

        Args:
            timeout: seconds to wait for the heartbeat thread.
        """
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self.term is not None:
            try:
                _leases.release(self.db, self.name, self.holder)
            except sqlalchemy.exc.SQLAlchemyError:
                logger.warning("could not release the rollout lease", exc_info=True)
        self.term = None
