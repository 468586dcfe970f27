"""The capture side of one ``LogosShift``: its settings, router and queue.

Every entry point (the decorator, routed functions, each patched provider,
feedback) hands records to an :class:`Instance` found by
:func:`logos_shift._capture.scope.current_instance`.  ``LogosShift`` owns one
and keeps the lifecycle (flush, stats, shutdown); the capture rules live here
and in the rest of :mod:`logos_shift._capture`, never in the client class.
"""

from __future__ import annotations

import logging
import numbers
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from logos_shift import _guard
from logos_shift._settings import Settings
from logos_shift._transport.channel import Channel
from logos_shift._transport.worker import WORKER

from . import record as _record
from . import scope as _scope
from .snapshot import snapshot

if TYPE_CHECKING:
    from logos_shift.routing.router import Router

logger = logging.getLogger("logos_shift")


class Instance:
    """Where one ``LogosShift``'s captures go.

    Args:
        settings: the instance's resolved settings.
        channel: its queue and destinations (on the shared worker thread).
        owner: the public ``LogosShift`` object (returned by ``get_client()``).
    """

    __slots__ = ("channel", "closed", "owner", "router", "settings")

    def __init__(self, settings: Settings, channel: Channel, owner: object) -> None:
        self.settings = settings
        self.channel = channel
        self.owner = owner
        #: The router, when routes come from a file or the server.
        self.router: Router | None = None
        self.closed = False

    def enqueue(self, record: dict[str, Any], size: int) -> bool:
        """Queue a finished record for the background thread (caller's thread, O(1))."""
        if self.closed:
            return False
        _guard.fault("enqueue")
        if self.channel.put(record, size):
            WORKER.notify()
        elif WORKER.thread is None:
            WORKER.ensure_started()
        return True

    def feedback(
        self,
        target: str,
        outcome: Any,
        score: Any,
        comment: Any,
        metadata: Mapping[str, Any] | None,
    ) -> str | None:
        """Build and queue a feedback record.

        Returns ``None`` when it is invalid (logged) or the instance is
        disabled (``enabled=False`` records nothing, feedback included).
        """
        if not _scope.should_capture(self):
            return None
        if outcome is True:
            outcome = "success"
        elif outcome is False:
            outcome = "failure"
        if outcome not in _record.OUTCOMES:
            logger.warning("provide_feedback: outcome %r is not one of %s; ignored",
                           outcome, ", ".join(_record.OUTCOMES))  # fmt: skip
            self.channel.drop("invalid_feedback")
            return None
        if score is not None and not _is_number(score):
            logger.warning("provide_feedback: score %r is not a number; recorded as null", score)
            score = None
        if comment is not None and not isinstance(comment, str):
            comment = str(comment)
        rec = _record.new_feedback(target, outcome, None if score is None else float(score),
                                   comment, metadata)  # fmt: skip
        _, size = snapshot(rec)
        self.enqueue(rec, size)
        return str(rec["id"])


def check_target(target_id: object) -> None:
    """Raise ValueError unless ``target_id`` is a non-empty string (a programming error)."""
    if not isinstance(target_id, str) or not target_id.strip():
        raise ValueError(f"provide_feedback needs a non-empty string id, got {target_id!r}")


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)
