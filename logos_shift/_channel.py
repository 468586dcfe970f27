"""One instance's side of the pipeline: its queue, destinations and counters.

The caller's thread only ever calls :meth:`Channel.put` (a lock, a deque
append and two counter bumps).  Everything else runs on the shared background
thread (:mod:`logos_shift._worker`): encoding, the local copy, uploads, spills
to the disk spool and replays from it.

Accounting: every record handed to ``put`` is counted in ``captured`` and ends
in exactly one of ``sent`` (delivered to the primary destination: the server
if one is configured, else the local file or memory sink), ``spooled`` (handed
durably to the disk spool, to be replayed later), ``dropped`` (by reason), or
is still ``pending``.  Hence ``captured == sent + spooled + dropped + pending``
at every moment, and ``pending == 0`` after a successful flush.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

from . import _guard, _serialize
from ._settings import Settings
from ._sinks import FileSink, HttpSink, SendResult
from ._spool import Spool

Redact = Callable[[dict[str, Any]], "dict[str, Any] | None"]

_REPLAY_PER_TICK = 4
_SPOOL_IDLE_CHECK = 5.0
_RECOVER_EVERY = 60.0


class _Open:
    """How many records of one batch are still in flight (not yet counted anywhere)."""

    __slots__ = ("n", "taken")

    def __init__(self, n: int) -> None:
        self.n = n
        self.taken = False  # a shutdown took the batch over from a stuck upload


class Channel:
    """Queue + destinations + counters of one :class:`~logos_shift.LogosShift`."""

    def __init__(
        self,
        settings: Settings,
        file: FileSink | None,
        http: HttpSink | None,
        spool: Spool | None,
        memory: list[bytes] | None = None,
        redact: Redact | None = None,
    ) -> None:
        self.settings = settings
        self.file = file
        self.http = http
        self.spool = spool
        self.memory = memory
        self.redact = redact
        self._init_state()

    def _init_state(self) -> None:
        self.lock = threading.Lock()
        self.done = threading.Condition(threading.Lock())
        self.queue: deque[tuple[dict[str, Any], int]] = deque()
        self.queued_bytes = 0
        self.inflight = 0
        self.held: deque[list[bytes]] = deque()  # failed batches when the spool is unusable
        self.flight: tuple[list[bytes], _Open] | None = None  # own batch being uploaded
        self.held_records = 0
        self.held_bytes = 0
        self.oldest_at = 0.0
        self.flush_requested = False
        self.deadline: float | None = None
        self.closed = False
        self.captured = 0
        self.sent = 0
        self.spooled = 0
        self.replayed = 0
        self.replay_rejected = 0
        self.dropped: Counter[str] = Counter()
        self.local_copy_errors = 0
        self.retries = 0
        self.failures = 0
        self.next_attempt = 0.0
        self.last_success: float | None = None
        self.last_error: str | None = None
        self.sent_bytes = 0
        self._spool_next = 0.0  # monotonic time of the next spool replay check
        self._recover_next = 0.0  # monotonic time of the next stale-claim sweep

    def reset_after_fork(self) -> None:
        """In a forked child: fresh locks and counters; the parent owns its queue."""
        self._init_state()
        if self.file is not None:
            self.file.reset_after_fork()
        if self.http is not None:
            self.http.reset_after_fork()
        if self.spool is not None:
            self.spool.reset_after_fork()

    # -- caller's thread -----------------------------------------------------

    def put(self, record: dict[str, Any], size: int) -> bool:
        """Queue a record; False (and counted) when the memory bound is hit."""
        s = self.settings
        with self.lock:
            self.captured += 1
            if self.closed:
                self.dropped["shutdown"] += 1
                return False
            if (
                len(self.queue) + self.held_records >= s.max_queue_items
                or self.queued_bytes + self.held_bytes + size > s.max_queue_bytes
            ):
                self.dropped["queue_full"] += 1
                return False
            if not self.queue:
                self.oldest_at = time.monotonic()
            self.queue.append((record, size))
            self.queued_bytes += size
            return len(self.queue) >= s.batch_size or self.queued_bytes >= s.batch_bytes

    def pending(self) -> int:
        """Records not yet sent, spooled or dropped."""
        return len(self.queue) + self.inflight + self.held_records

    def stats(self) -> dict[str, Any]:
        """Counters; see the module docstring for the accounting identity."""
        with self.lock:
            dropped = dict(self.dropped)
            out: dict[str, Any] = {
                "captured": self.captured,
                "sent": self.sent,
                "spooled": self.spooled,
                "dropped": sum(dropped.values()),
                "dropped_by_reason": dropped,
                "pending": self.pending(),
                "queued_bytes": self.queued_bytes,
                "replayed": self.replayed,
                "replay_rejected": self.replay_rejected,
                "retries": self.retries,
                "consecutive_failures": self.failures,
                "last_success_ts": self.last_success,
                "last_error": self.last_error,
                "local_copy_errors": self.local_copy_errors,
                "sent_bytes": self.sent_bytes,
            }
        if self.spool is not None:
            st = self.spool.stats
            out["spool"] = {
                "dir": str(self.spool.dir),
                "available": self.spool.available(),
                "write_errors": st.write_errors,
                "evicted_records": st.evicted_records,
                "corrupt_files": st.corrupt_files,
                "too_big": st.too_big,
            }
        return out

    # -- background thread -----------------------------------------------------

    def due(self, now: float) -> bool:
        """Whether the worker should drain this channel now."""
        if self.flush_requested or self.deadline is not None:
            return True
        if self.queue:
            s = self.settings
            if len(self.queue) >= s.batch_size or self.queued_bytes >= s.batch_bytes:
                return True
            if now - self.oldest_at >= s.flush_interval:
                return True
        return bool(
            self.http is not None
            and now >= self.next_attempt
            and (self.held or self._spool_due(now))
        )

    def next_wakeup(self, now: float) -> float:
        """Seconds until this channel next needs the worker."""
        waits = [self.settings.flush_interval]
        if self.queue:
            waits.append(self.oldest_at + self.settings.flush_interval - now)
        if self.http is not None and (self.held or self.failures):
            waits.append(self.next_attempt - now)
        if self.http is not None and self.spool is not None:
            waits.append(max(self._spool_next, self.next_attempt) - now)
        return max(0.0, min(waits))

    def tick(self, now: float) -> None:
        """Drain due batches, then retry held batches and replay the spool."""
        if self.spool is not None and now >= self._recover_next:
            # Also periodically: a process sharing the spool may have been
            # killed holding claims, and this process may live for weeks.
            self._recover_next = now + _RECOVER_EVERY
            with _guard.guard("spool.recover"):
                self.spool.recover()
        while True:
            force = self.flush_requested or self.deadline is not None
            batch = self._take(now, force)
            if not batch:
                break
            acct = _Open(len(batch))
            try:
                self._deliver(batch, acct)
            finally:
                # Only a bug cuts delivery short: count its records, never
                # leave them pending forever.
                self._settle_rest(acct)
            now = time.monotonic()
        if self.http is not None:
            self._retry_held()
            self._replay_spool()
        with self.done:
            self.flush_requested = False
            self.done.notify_all()

    def _settle(self, acct: _Open, n: int, outcome: str) -> None:
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

    def _settle_rest(self, acct: _Open) -> None:
        with self.lock:
            if acct.taken:
                return
        self._settle(acct, acct.n, "internal_error")

    def _take(self, now: float, force: bool) -> list[tuple[dict[str, Any], int]]:
        s = self.settings
        with self.lock:
            if not self.queue:
                return []
            full = len(self.queue) >= s.batch_size or self.queued_bytes >= s.batch_bytes
            if not (force or full or now - self.oldest_at >= s.flush_interval):
                return []
            batch: list[tuple[dict[str, Any], int]] = []
            size = 0
            while self.queue and len(batch) < s.batch_size and (size < s.batch_bytes or not batch):
                item = self.queue.popleft()
                batch.append(item)
                size += item[1]
            self.queued_bytes -= size
            self.inflight += len(batch)
            self.oldest_at = now
            return batch

    def _encode(self, batch: list[tuple[dict[str, Any], int]], acct: _Open) -> list[bytes]:
        s = self.settings
        lines: list[bytes] = []
        for record, _ in batch:
            line: bytes | None = None
            with _guard.guard("serialize"):
                rec: dict[str, Any] | None = record
                if not s.capture_content and record.get("type") == "call":
                    rec = {**record, "input": None, "output": None}
                if self.redact is not None and rec is not None:
                    rec = self.redact(dict(rec))
                if rec is None:
                    self._settle(acct, 1, "redacted")
                    continue
                line = _serialize.encode_record(rec, s.max_record_bytes)
            if line is None:
                self._settle(acct, 1, "serialize_error")
            else:
                lines.append(line)
        return lines

    def _deliver(self, batch: list[tuple[dict[str, Any], int]], acct: _Open) -> None:
        lines = self._encode(batch, acct)
        if not lines:
            return
        if self.memory is not None:
            self.memory.extend(lines)
        if self._write_local(lines, acct):
            self._upload(lines, acct)

    def _write_local(self, lines: list[bytes], acct: _Open) -> bool:
        """Write the local copy; True if the batch still has to be uploaded."""
        n = len(lines)
        if self.file is not None:
            ok = False
            with _guard.guard("file_sink"):
                try:
                    self.file.write(lines)
                    ok = True
                except OSError:  # a full or vanished disk is weather, not a bug
                    _guard.report("file_sink.write")
            if not ok:
                if self.http is None:
                    self._settle(acct, n, "file_error")
                    return False
                self.local_copy_errors += 1
        if self.http is None:
            self._settle(acct, n, "sent")
            return False
        return True

    def _send(self, lines: list[bytes], acct: _Open) -> tuple[SendResult | None, bool]:
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

    def _upload(self, lines: list[bytes], acct: _Open) -> None:
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

    def _spill(self, lines: list[bytes], acct: _Open) -> None:
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
            acct = _Open(n)
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

    def spill_queue(self) -> int:
        """At the deadline: move everything still in memory to the spool.

        That is the queue, the held batches and the batch a stuck upload is
        holding (the worker drops its late result); called on the closing
        thread while the worker may still be blocked in a request.
        """
        with self.lock:
            items = list(self.queue)
            self.queue.clear()
            self.queued_bytes = 0
            self.inflight += len(items)
            flight, self.flight = self.flight, None
            if flight is not None:
                flight[1].taken = True
        acct = _Open(len(items))
        try:
            if flight is not None:
                self._spill(*flight)
            if items:
                lines = self._encode(items, acct)
                if self.memory is not None:
                    self.memory.extend(lines)
                if lines and self._write_local(lines, acct):
                    self._spill(lines, acct)
            while True:
                with self.lock:
                    if not self.held:
                        break
                    lines = self.held.popleft()
                    n = len(lines)
                    self.held_records -= n
                    self.held_bytes -= sum(len(x) for x in lines)
                    self.inflight += n
                self._spill(lines, _Open(n))
        finally:
            self._settle_rest(acct)
        return len(items)

    def close(self) -> None:
        """Release files and connections."""
        if self.file is not None:
            with _guard.guard("file_sink.close"):
                self.file.close()
        if self.http is not None:
            with _guard.guard("http.close"):
                self.http.close()
