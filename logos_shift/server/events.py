"""In-process events: ingest publishes "records arrived for project/dataset".

The rollout loop subscribes (see :mod:`logos_shift.server.rollout.service`):
a route whose dataset received calls or feedback is evaluated about a second
later.  Publishing never blocks and never fails the request: subscribers only
note the arrival; the work happens on the loop's thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = ["ANY_DATASET", "Events", "datasets_of"]

logger = logging.getLogger("logos_shift.server")

#: The dataset of feedback-only arrivals: feedback names its call, not the call's dataset.
ANY_DATASET = ""

Subscriber = Callable[[int, frozenset[str]], None]


def datasets_of(records: Iterable[Mapping[str, Any]]) -> frozenset[str]:
    """Return the datasets a batch of records touches.

    Args:
        records: call and feedback records (as sent to ``/v1/ingest``).

    Returns:
        The call records' datasets, plus :data:`ANY_DATASET` when the batch
        holds feedback.
    """
    out: set[str] = set()
    for rec in records:
        if rec.get("type") == "feedback":
            out.add(ANY_DATASET)
        elif isinstance(rec.get("dataset"), str):
            out.add(rec["dataset"])
    return frozenset(out)


class Events:
    """A tiny publish/subscribe hub, one per app (``app.state.events``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: list[Subscriber] = []

    def subscribe(self, fn: Subscriber) -> Callable[[], None]:
        """Call ``fn(project_id, datasets)`` on every arrival; it must not block.

        Args:
            fn: the subscriber.

        Returns:
            A function that unsubscribes it.
        """
        with self._lock:
            self._subscribers.append(fn)

        def unsubscribe() -> None:
            with self._lock:
                if fn in self._subscribers:
                    self._subscribers.remove(fn)

        return unsubscribe

    def records_arrived(self, project_id: int, datasets: frozenset[str]) -> None:
        """Publish that records arrived for a project's datasets.

        Args:
            project_id: the project.
            datasets: the datasets (see :func:`datasets_of`); nothing is published when empty.
        """
        if not datasets:
            return
        with self._lock:
            subscribers = list(self._subscribers)
        for fn in subscribers:
            try:
                fn(project_id, datasets)
            except Exception:  # a subscriber's bug must not fail an ingest
                logger.exception("an ingest subscriber failed")
