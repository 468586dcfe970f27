"""Uploading one channel's batches: backoff, spill, held batches, spool replay.

A mixin of :class:`~logos_shift._channel.Channel`, split out to keep each
module about one thing; it runs on the background thread, except
:meth:`Uploader._spill`, which the closing thread also calls when it takes a
stuck upload over.  The accounting primitive :meth:`Uploader._settle` lives
here too: every record leaves ``inflight`` through it.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter, deque
from typing import Any

from logos_shift import _guard
from logos_shift._settings import Settings

from .sinks import HttpSink, SendResult
from .spool import Spool

_REPLAY_PER_TICK = 4
_SPOOL_IDLE_CHECK = 5.0


class BatchAccount:
    """How many records of one batch are still in flight (not yet counted anywhere)."""

    __slots__ = ("n", "taken")

    def __init__(self, n: int) -> None:
        self.n = n
        self.taken = False  # a shutdown took the batch over from a stuck upload


class Uploader:
    """HTTP delivery and the spool for a channel (state lives in ``Channel``)."""

    settings: Settings
    http: HttpSink | None
    spool: Spool | None
    lock: threading.Lock
    queue: deque[tuple[dict[str, Any], int]]
    queued_bytes: int
    inflight: int
    held: deque[list[bytes]]
    held_records: int
    held_bytes: int
    flight: tuple[list[bytes], BatchAccount] | None
    deadline: float | None
    flush_requested: bool
    sent: int
    spooled: int
    replayed: int
    replay_rejected: int
    dropped: Counter[str]
    retries: int
    failures: int
    next_attempt: float
    last_success: float | None
    last_error: str | None
    sent_bytes: int
    _spool_next: float

    def _settle(self, acct: BatchAccount, n: int, outcome: str) -> None:
        """Move ``n`` in-flight records of ``acct`` to sent, spooled, held or dropped.

        Every record leaves ``inflight`` through here, under the lock, at the
        moment it is counted elsewhere, so the accounting identity holds at
        every instant, even while a shutdown takes over a stuck upload.
        """
        with self.lock:
            n = min(n, acct.n)
            if n <= 0:
                return
            acct.n -= n
            self.inflight -= n
            if outcome == "sent":
                self.sent += n
            elif outcome == "spooled":
                self.spooled += n
            elif outcome == "held":
                self.held_records += n
            else:
                self.dropped[outcome] += n

    def _settle_rest(self, acct: BatchAccount) -> None:
        with self.lock:
            if acct.taken:
                return
        self._settle(acct, acct.n, "internal_error")

    def _send(self, lines: list[bytes], acct: BatchAccount) -> tuple[SendResult | None, bool]:
        """Upload an own batch; ``(result, taken)``, taken if a shutdown spooled it meanwhile."""
        with self.lock:
            self.flight = (lines, acct)
        result: SendResult | None = None
        try:
            with _guard.guard("upload"):
                assert self.http is not None
                result = self.http.send(lines, self.deadline)
        finally:
            with self.lock:
                taken = self.flight is None
                self.flight = None
        return result, taken

    def _upload(self, lines: list[bytes], acct: BatchAccount) -> None:
        if time.monotonic() < self.next_attempt or self._past_upload_budget():
            self._spill(lines, acct)
            return
        result, taken = self._send(lines, acct)
        if taken:
            return
        if result is None:  # the uploader itself failed: treat like a failed attempt
            self._failed(None, "internal error")
            self._spill(lines, acct)
            return
        self._settle(acct, result.sent, "sent")
        self._settle(acct, result.rejected, "rejected")
        if result.sent:
            self.sent_bytes += sum(len(x) for x in lines)
        if result.failed:
            self._failed(result.retry_after, result.error)
            self._spill(result.failed, acct)
        else:
            self._succeeded()

    def _succeeded(self) -> None:
        self.failures = 0
        self.next_attempt = 0.0
        self.last_success = time.time()

    def _failed(self, retry_after: float | None, error: str | None) -> None:
        self.failures += 1
        self.retries += 1
        self.last_error = error
        # Full jitter (AWS architecture blog): spreads a fleet's retries out.
        cap = min(self.settings.max_backoff, 0.5 * 2 ** min(self.failures, 16))
        delay = random.uniform(0, cap)
        if retry_after is not None:
            delay = max(delay, retry_after)
        self.next_attempt = time.monotonic() + delay

    def _failed_result(self, result: SendResult | None) -> None:
        if result is None:
            self._failed(None, "internal error")
        else:
            self._failed(result.retry_after, result.error)

    def _spill(self, lines: list[bytes], acct: BatchAccount) -> None:
        """Spool a failed batch; hold it in memory if the spool is unusable."""
        n = len(lines)
        ok = False
        if self.spool is not None:
            with _guard.guard("spool"):
                ok = self.spool.write(lines)
        if ok:
            self._settle(acct, n, "spooled")
            self._count_evictions()
            self._spool_next = 0.0  # replay as soon as the backoff allows
            return
        size = sum(len(x) for x in lines)
        s = self.settings
        with self.lock:
            keep = (
                self.deadline is None
                and self.held_bytes + self.queued_bytes + size <= s.max_queue_bytes
                and self.held_records + len(self.queue) + n <= s.max_queue_items
            )
            if keep:
                self.held.append(lines)
                self.held_bytes += size
        self._settle(acct, n, "held" if keep else "spool_unavailable")

    def _count_evictions(self) -> None:
        """Records of ours the spool deleted to respect its caps are dropped, not spooled."""
        assert self.spool is not None
        evicted = self.spool.take_own_evictions()
        if evicted:
            with self.lock:
                for reason, n in evicted.items():
                    self.spooled -= n
                    self.dropped[reason] += n

    def _retry_held(self) -> None:
        while (
            self.held and time.monotonic() >= self.next_attempt and not self._past_upload_budget()
        ):
            with self.lock:
                if not self.held:
                    return
                lines = self.held.popleft()
                n = len(lines)
                self.held_records -= n
                self.held_bytes -= sum(len(x) for x in lines)
                self.inflight += n
            acct = BatchAccount(n)
            try:
                result, taken = self._send(lines, acct)
                if taken:
                    return
                if result is None or result.failed:
                    self._failed_result(result)
                    with self.lock:
                        self.held.appendleft(lines)
                        self.held_bytes += sum(len(x) for x in lines)
                    self._settle(acct, n, "held")
                    return
                self._settle(acct, result.sent, "sent")
                self._settle(acct, result.rejected, "rejected")
                self._succeeded()
            finally:
                self._settle_rest(acct)

    def _spool_due(self, now: float) -> bool:
        return self.spool is not None and now >= self._spool_next

    def _past_upload_budget(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    def _replay_spool(self) -> None:
        spool = self.spool
        now = time.monotonic()
        if spool is None or now < self.next_attempt or self.deadline is not None:
            return
        if not self._spool_due(now) and not self.flush_requested:
            return
        # An empty spool is looked at again now and then: other processes
        # sharing it, or an earlier run of this program, may leave batches.
        self._spool_next = now + _SPOOL_IDLE_CHECK
        # A few batches per tick keeps a recovering server from a stampede of
        # every process replaying its whole backlog at once.  The pace is 4
        # batches per second, or faster with a short flush interval, so the
        # backlog always drains several times faster than an outage grew it.
        for _ in range(_REPLAY_PER_TICK):
            claim = None
            with _guard.guard("spool.replay"):
                claim = spool.claim_oldest()
            if claim is None:
                return
            result: SendResult | None = None
            with _guard.guard("upload"):
                assert self.http is not None
                result = self.http.send(claim.lines)
            if result is None or result.failed:
                claim.release()
                self._failed_result(result)
                self._spool_next = 0.0  # the backoff alone decides the next try
                return
            claim.done()
            with self.lock:
                self.replayed += result.sent
                # Replayed records may be another process's: their drops are
                # counted apart so this process's identity still holds.
                self.replay_rejected += result.rejected
            self._succeeded()
        pace = min(1.0, 2 * self.settings.flush_interval)
        self._spool_next = time.monotonic() + pace * random.uniform(0.8, 1.2)
