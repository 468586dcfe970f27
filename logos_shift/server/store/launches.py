"""The fine-tune launch log and the per-project quota it enforces."""

from __future__ import annotations

import sqlalchemy as sa

from .db import Database
from .schema import finetune_launches, projects

__all__ = ["WINDOW_S", "QuotaExceeded", "reserve"]

#: The quota counts launches in any window of this many seconds.
WINDOW_S = 24 * 3600.0


class QuotaExceeded(Exception):
    """The project launched its quota of fine-tunes in the last 24 hours (answered 429).

    Attributes:
        retry_after_s: seconds until the oldest counted launch leaves the window.
    """

    def __init__(self, limit: int, retry_after_s: float) -> None:
        super().__init__(
            f"this project has used its quota of {limit} fine-tune launches in 24 hours; "
            f"the next one is possible in {retry_after_s / 3600:.1f} h"
        )
        self.retry_after_s = retry_after_s


def reserve(
    db: Database, project_id: int, backend: str, route: str, limit: int, now: float
) -> None:
    """Record a launch, unless the project already made ``limit`` in the last 24 hours.

    The count and the insert share one write transaction (SQLite's write lock, a row
    lock on the project in PostgreSQL), so concurrent launches cannot both slip in.

    Args:
        db: the database.
        project_id: the project.
        backend: the backend's name (``project`` for a project's own URL).
        route: the route being trained for.
        limit: launches allowed per 24 hours.
        now: Unix time.

    Raises:
        QuotaExceeded: the quota is used up.
    """
    t = finetune_launches
    with db.write() as conn:
        if db.dialect == "postgresql":
            conn.execute(
                sa.select(projects.c.id).where(projects.c.id == project_id).with_for_update()
            )
        recent = [
            float(ts)
            for ts in conn.execute(
                sa.select(t.c.ts)
                .where(t.c.project_id == project_id, t.c.ts > now - WINDOW_S)
                .order_by(t.c.ts)
            ).scalars()
        ]
        if len(recent) >= limit:
            oldest = recent[len(recent) - limit]
            raise QuotaExceeded(limit, max(1.0, oldest + WINDOW_S - now))
        conn.execute(t.insert().values(project_id=project_id, backend=backend, route=route, ts=now))
