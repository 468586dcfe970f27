"""One instance's side of the pipeline: its queue, destinations and counters.

The caller's thread only ever calls :meth:`Channel.put` (a lock, a deque
append and two counter bumps).  Everything else runs on the shared background
thread (:mod:`logos_shift._transport.worker`): encoding, the local copy,
spills to the disk spool; the uploads themselves (fresh batches, held ones,
replays from the spool) run on the channel's sender thread
(:mod:`logos_shift._transport.upload`), so a slow server never holds the
queue hostage.  The one exception is a shutdown past its upload budget: the
closing thread spools what is left (:meth:`Channel.spill_queue`, in chunks,
within the deadline), including the batch of an upload that is stuck.

Accounting: every record handed to ``put`` is counted in ``captured`` and ends
in exactly one of ``sent`` (delivered to the primary destination: the server
if one is configured, else the local file or memory sink), ``spooled`` (handed
durably to the disk spool, to be replayed later), ``dropped`` (by reason), or
is still ``pending``.  Hence ``captured == sent + spooled + dropped + pending``
at every moment, and ``pending == 0`` after a successful flush.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

from logos_shift import _guard
from logos_shift._settings import Settings

from . import serialize as _serialize
from .sinks import FileSink, HttpSink, Sink
from .spool import Spool
from .upload import BatchAccount, Job, Sender, Uploader

#: Turns a queued record into the dict to write, or None to drop it (counted as
#: ``redacted``); runs on the background thread.  The capture layer supplies it.
Prepare = Callable[[dict[str, Any]], "dict[str, Any] | None"]

_RECOVER_EVERY = 60.0


class Channel(Uploader):
    """Queue + destinations + counters of one :class:`~logos_shift.LogosShift`."""

    def __init__(
        self,
        settings: Settings,
        file: FileSink | None,
        http: HttpSink | None,
        spool: Spool | None,
        sink: Sink | None = None,
        prepare: Prepare | None = None,
    ) -> None:
        self.settings = settings
        self.file = file
        self.http = http
        self.spool = spool
        self.sink = sink
        self.prepare = prepare
        #: Called when an upload finished, to wake the worker (set by the worker).
        self.wakeup: Callable[[], None] | None = None
        self._init_state()

    def _init_state(self) -> None:
        self.lock = threading.Lock()
        self.done = threading.Condition(threading.Lock())
        self.queue: deque[tuple[dict[str, Any], int]] = deque()
        self.queued_bytes = 0
        self.inflight = 0
        self.held: deque[list[bytes]] = deque()  # failed batches when the spool is unusable
        self.flight: tuple[list[bytes], BatchAccount] | None = None  # own batch being uploaded
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
        self.slow = 0
        self.next_attempt = 0.0
        self.last_success: float | None = None
        self.last_error: str | None = None
        self.sent_bytes = 0
        self._spool_next = 0.0  # monotonic time of the next spool replay check
        self._recover_next = 0.0  # monotonic time of the next stale-claim sweep
        self._replay_window = 0.0
        self._replay_count = 0
        self._config_warned = 0.0
        self._adopt_next = 0.0
        self.inline = False  # uploads on the calling thread (exit without threads)
        self.ready: Job | None = None  # the next batch, encoded while an upload runs
        self.sender = Sender(self.run_job, "logos-shift-sender", self._sender_idle)

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

    def drop(self, reason: str) -> None:
        """Count a record that was refused before it was queued (invalid feedback)."""
        with self.lock:
            self.captured += 1
            self.dropped[reason] += 1

    def pending(self) -> int:
        """Records not yet sent, spooled or dropped (queued, in flight or held)."""
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
                "slow": self.slow,
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
                "skipped_files": st.skipped_files,
                "unreadable_files": st.unreadable_files,
                "config_error": self.spool.config_error,
                "quarantined": self.spool.quarantined(),
            }
        return out

    # -- background thread -----------------------------------------------------

    def due(self, now: float) -> bool:
        """Whether the worker should drain this channel now."""
        if self.http is not None and self._route(now) == "wait" and self.ready is not None:
            return False  # an upload runs, the next is ready; the sender wakes the worker
        if self.deadline is not None:
            return True
        if self.flush_requested:
            return True
        if self.queue:
            s = self.settings
            if len(self.queue) >= s.batch_size or self.queued_bytes >= s.batch_bytes:
                return True
            if now - self.oldest_at >= s.flush_interval:
                return True
        return bool(
            self.http is not None
            and not self.sender.busy()
            and now >= self.next_attempt
            and (self.held or self._spool_due(now))
        )

    def next_wakeup(self, now: float) -> float:
        """Seconds until this channel next needs the worker."""
        job = self.sender.job
        if self.http is not None and job is not None and self.ready is not None:
            # An upload runs and the next batch is encoded: nothing to do until the
            # sender ends it (and wakes the worker) or it turns slow; without this
            # the worker polled every 10 ms for the whole upload (a busy loop that
            # starved the server on a small machine).
            return 1.0 if job.slow else max(0.0, job.started + self.slow_after() - now)
        waits = [self.settings.flush_interval]
        if self.queue:
            waits.append(self.oldest_at + self.settings.flush_interval - now)
        if self.http is not None and (self.held or self.failures):
            waits.append(self.next_attempt - now)
        if self.http is not None and self.spool is not None:
            waits.append(max(self._spool_next, self.next_attempt) - now)
        if job is not None and not job.slow:
            waits.append(job.started + self.slow_after() - now)
        return max(0.0, min(waits))

    def tick(self, now: float) -> None:
        """Route due batches (send, wait or spill), then retry held batches or replay one."""
        if self.spool is not None and now >= self._recover_next:
            # Also periodically: a process sharing the spool may have been
            # killed holding claims, and this process may live for weeks.
            self._recover_next = now + _RECOVER_EVERY
            with _guard.guard("spool.recover"):
                self.spool.recover()
        while True:
            route = self._route(now)
            if route == "wait":
                if self.ready is not None:
                    break
                route = "ready"  # encode the next batch while the upload runs
            elif route != "send":
                self._spill_ready()
            elif self.ready is not None and self._submit_ready():
                continue
            force = self.flush_requested or self.deadline is not None or route == "spill_hw"
            batch = self._take(now, force)
            if not batch:
                break
            acct = BatchAccount(len(batch))
            handed = False
            try:
                handed = self._deliver(batch, acct, route)
            finally:
                # Only a bug cuts delivery short: count its records, never
                # leave them pending forever.
                if not handed:
                    self._settle_rest(acct)
            now = time.monotonic()
        if self.http is not None:
            self._background_jobs(now)
        with self.done:
            self.flush_requested = False
            self.done.notify_all()

    def _take(self, now: float, force: bool) -> list[tuple[dict[str, Any], int]]:
        s = self.settings
        with self.lock:
            if not self.queue:
                return []
            full = len(self.queue) >= s.batch_size or self.queued_bytes >= s.batch_bytes
            if not (force or full or now - self.oldest_at >= s.flush_interval):
                return []
            self.oldest_at = now
            return self._pop_batch()

    def _pop_batch(self) -> list[tuple[dict[str, Any], int]]:
        """One batch off the queue, now in flight (the lock is held)."""
        s = self.settings
        batch: list[tuple[dict[str, Any], int]] = []
        size = 0
        while self.queue and len(batch) < s.batch_size and (size < s.batch_bytes or not batch):
            item = self.queue.popleft()
            batch.append(item)
            size += item[1]
        self.queued_bytes -= size
        self.inflight += len(batch)
        return batch

    def _encode(self, batch: list[tuple[dict[str, Any], int]], acct: BatchAccount) -> list[bytes]:
        s = self.settings
        lines: list[bytes] = []
        for record, _ in batch:
            line: bytes | None = None
            with _guard.guard("serialize"):
                rec = record if self.prepare is None else self.prepare(record)
                if rec is None:
                    self._settle(acct, 1, "redacted")
                    continue
                line = _serialize.encode_record(rec, s.max_record_bytes)
            if line is None:
                self._settle(acct, 1, "serialize_error")
            else:
                lines.append(line)
        return lines

    def _deliver(
        self, batch: list[tuple[dict[str, Any], int]], acct: BatchAccount, route: str
    ) -> bool:
        """Encode, write locally, then send or spill; True if the sender took the batch."""
        lines = self._encode(batch, acct)
        if not lines or not self._write_local(lines, acct):
            return False
        return self._dispatch(lines, acct, route)  # a job settles what is left of it

    def _write_local(self, lines: list[bytes], acct: BatchAccount) -> bool:
        """Write the local copies; True if the batch still has to be uploaded."""
        n = len(lines)
        if self.sink is not None:
            ok = False
            with _guard.guard("sink"):
                self.sink.write(lines)
                ok = True
            if not ok and self.http is None and self.file is None:
                self._settle(acct, n, "sink_error")
                return False
            if not ok:
                self.local_copy_errors += 1
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

    def spill_queue(self, deadline: float | None = None) -> int:
        """At the deadline: move everything still in memory to the spool.

        That is the queue, the held batches and the batch a stuck upload is
        holding (the worker drops its late result); called on the closing
        thread while the worker may still be blocked in a request.  The queue
        is encoded and spooled one batch at a time, so the memory it takes
        stays near one batch; past ``deadline`` what is left is dropped and
        counted (``shutdown_timeout``) rather than delaying the exit.

        Returns:
            How many queued records were taken (spooled, written or dropped).
        """
        with self.lock:
            flight, self.flight = self.flight, None
            if flight is not None:
                flight[1].taken = True
        if flight is not None:
            self._spill(*flight)
        self._spill_ready()
        while True:
            with self.lock:
                if not self.held:
                    break
                lines = self.held.popleft()
                n = len(lines)
                self.held_records -= n
                self.held_bytes -= sum(len(x) for x in lines)
                self.inflight += n
            self._spill(lines, BatchAccount(n))
        taken = 0
        while True:
            chunk = self._take_chunk()
            if not chunk:
                break
            taken += len(chunk)
            acct = BatchAccount(len(chunk))
            try:
                if deadline is not None and time.monotonic() >= deadline:
                    self._settle(acct, acct.n, "shutdown_timeout")
                    continue
                lines = self._encode(chunk, acct)
                del chunk
                if lines and self._write_local(lines, acct):
                    self._spill(lines, acct)
            finally:
                self._settle_rest(acct)
        return taken

    def _take_chunk(self) -> list[tuple[dict[str, Any], int]]:
        with self.lock:
            return self._pop_batch()

    def close(self) -> None:
        """Release files, connections and the sender thread."""
        self.sender.stop()
        if self.file is not None:
            with _guard.guard("file_sink.close"):
                self.file.close()
        if self.http is not None:
            with _guard.guard("http.close"):
                self.http.close()
