"""Uploading one channel's batches: the sender thread, backpressure, backoff, spool replay.

A mixin of :class:`~logos_shift._transport.channel.Channel`, split out to keep
each module about one thing.  Uploads never run on the worker thread: each
channel with a server has its own *sender* thread that performs one upload at
a time (a fresh batch, a held batch or a spooled batch being replayed), so an
upload that hangs or crawls never holds the queue hostage.  The worker decides
where each due batch goes (:meth:`Uploader._route`):

* ``send`` - the sender is idle and the server is not in backoff;
* ``wait`` - an upload is running, within its deadline, and the queue is below
  its high-water mark: the batch stays queued a little longer;
* ``spill`` - the server is in backoff, the running upload is past its
  deadline (counted as ``slow``), the queue is past its high-water mark, or the
  shutdown's upload budget is spent: the batch goes to the disk spool, to be
  replayed once the server keeps up again.

The accounting primitive :meth:`Uploader._settle` lives here too: every record
leaves ``inflight`` through it.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from logos_shift import _guard
from logos_shift._settings import Settings

from .sinks import HttpSink, SendResult
from .spool import Claim, Spool

logger = logging.getLogger("logos_shift")

_REPLAY_PER_TICK = 4
_SPOOL_IDLE_CHECK = 5.0
_CONFIG_WARN_EVERY = 60.0  # seconds between two warnings about a configuration error


class BatchAccount:
    """How many records of one batch are still in flight (not yet counted anywhere)."""

    __slots__ = ("n", "taken")

    def __init__(self, n: int) -> None:
        self.n = n
        self.taken = False  # a shutdown took the batch over from a stuck upload


@dataclass
class Job:
    """One upload for the sender thread: own lines (fresh or held) or a spool claim."""

    kind: str  # "own", "held" or "replay"
    lines: list[bytes]
    acct: BatchAccount | None = None
    claim: Claim | None = None
    started: float = 0.0
    slow: bool = False  # already counted as slow


class Sender:
    """A daemon thread that runs one upload :class:`Job` at a time for a channel."""

    def __init__(
        self, run: Callable[[Job], None], name: str, done: Callable[[], None] | None = None
    ) -> None:
        self._run_job = run
        self._done = done  # called after each job, once the sender is idle again
        self._name = name
        self._cond = threading.Condition(threading.Lock())
        self.job: Job | None = None
        self._thread: threading.Thread | None = None
        self._stopped = False

    def busy(self) -> bool:
        """Whether an upload is running."""
        return self.job is not None

    def submit(self, job: Job, inline: bool = False) -> bool:
        """Start ``job``; False if an upload is already running (the caller keeps the job).

        With ``inline``, or when no thread can start, the job runs on the
        calling thread.
        """
        with self._cond:
            if self.job is not None:
                return False
            job.started = time.monotonic()
            self.job = job
        if not inline and self._ensure_thread():
            with self._cond:
                self._cond.notify()
            return True
        try:
            self._run_job(job)
        finally:
            with self._cond:
                self.job = None
        return True

    def stop(self) -> None:
        """Let the thread end once its current job (if any) is done."""
        with self._cond:
            self._stopped = True
            self._cond.notify()

    def _ensure_thread(self) -> bool:
        t = self._thread
        if t is not None and t.is_alive():
            return True
        if self._stopped:
            return False  # after close: the job runs on the calling thread
        t = threading.Thread(target=self._loop, name=self._name, daemon=True)
        try:
            t.start()
        except RuntimeError:  # interpreter shutdown: no new threads
            return False
        self._thread = t
        return True

    def _loop(self) -> None:
        while True:
            with self._cond:
                while self.job is None:
                    if self._stopped:
                        return
                    self._cond.wait()
                job = self.job
            try:
                with _guard.guard("sender"):
                    self._run_job(job)
            finally:
                with self._cond:
                    self.job = None
                if self._done is not None:
                    with _guard.guard("sender.done"):
                        self._done()


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
    slow: int
    next_attempt: float
    last_success: float | None
    last_error: str | None
    sent_bytes: int
    sender: Sender
    wakeup: Callable[[], None] | None
    inline: bool
    ready: Job | None
    _spool_next: float
    _replay_window: float
    _replay_count: int
    _config_warned: float
    _adopt_next: float

    # -- accounting ------------------------------------------------------------

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

    # -- where a due batch goes ----------------------------------------------------

    def slow_after(self) -> float:
        """Seconds after which a running upload counts as slow (2 x flush_interval, >= 1 s)."""
        s = self.settings
        return min(s.http_timeout, max(1.0, 2.0 * s.flush_interval))

    def _above_high_water(self) -> bool:
        s = self.settings
        return (
            len(self.queue) + self.held_records > s.max_queue_items // 2
            or self.queued_bytes + self.held_bytes > s.max_queue_bytes // 2
        )

    def _route(self, now: float) -> str:
        """``send``, ``wait``, ``spill`` or ``spill_hw`` (past the high-water mark)."""
        if self.http is None:
            return "send"  # local destinations only: written at once
        if self._past_upload_budget() or now < self.next_attempt:
            return "spill"
        job = self.sender.job
        if job is None:
            return "send"
        if now - job.started >= self.slow_after():
            self._note_slow(job, now)
            if not (self.flush_requested or self.deadline is not None):
                return "spill"
            # A flush or the exit waits with its own deadline: the batches wait for
            # the slow upload instead of going to a spool no process may replay
            # (the exit spills what is left when its upload budget is spent).
        if self._above_high_water():
            return "spill_hw"
        return "wait"

    def _note_slow(self, job: Job, now: float) -> None:
        if job.slow:
            return
        job.slow = True
        with self.lock:
            self.slow += 1
            self.failures += 1
            assert self.http is not None
            self.last_error = (
                f"slow: an upload to {self.http.url} has been running for "
                f"{now - job.started:.1f} s (more than {self.slow_after():g} s); "
                "new batches go to the spool until the server keeps up"
            )

    def _dispatch(self, lines: list[bytes], acct: BatchAccount, route: str) -> bool:
        """Hand an encoded batch (already written locally) to the sender, or park or spill it.

        ``ready`` parks it as the next upload, encoded while the current one
        runs.  Returns True if a job now owns the batch.
        """
        job = Job("own", lines, acct)
        if route == "send" and self._submit(job):
            return True
        if route in ("send", "ready"):
            with self.lock:
                if self.ready is None:
                    self.ready = job
                    return True
        self._spill(lines, acct)
        return False

    def _submit(self, job: Job) -> bool:
        return self.sender.submit(job, inline=self.inline)

    def _take_ready(self) -> Job | None:
        with self.lock:
            job, self.ready = self.ready, None
        return job

    def _spill_ready(self) -> None:
        """The parked batch waited for nothing: spool it (backoff, slow upload, deadline)."""
        job = self._take_ready()
        if job is not None and job.acct is not None:
            try:
                self._spill(job.lines, job.acct)
            finally:
                self._settle_rest(job.acct)

    def _submit_ready(self) -> bool:
        """Start the parked batch if the sender is free; True if it started."""
        job = self._take_ready()
        if job is None:
            return False
        if self._submit(job):
            return True
        with self.lock:
            if self.ready is None:
                self.ready = job
                return False
        assert job.acct is not None
        try:
            self._spill(job.lines, job.acct)
        finally:
            self._settle_rest(job.acct)
        return False

    def _background_jobs(self, now: float) -> None:
        """With the sender idle and the server healthy: retry a held batch or replay one."""
        if self.sender.busy() or now < self.next_attempt or self._past_upload_budget():
            return
        with self.lock:
            lines = self.held.popleft() if self.held else None
            if lines is not None:
                n = len(lines)
                self.held_records -= n
                self.held_bytes -= sum(len(x) for x in lines)
                self.inflight += n
        if lines is not None:
            acct = BatchAccount(len(lines))
            if not self._submit(Job("held", lines, acct)):
                self._spill(lines, acct)
                self._settle_rest(acct)
            return
        self._maybe_replay(now)

    # -- the sender thread ---------------------------------------------------------

    def run_job(self, job: Job) -> None:
        """Perform one upload and settle its outcome (sender thread, or inline)."""
        try:
            if job.kind == "replay":
                self._run_replay(job)
            else:
                self._run_own(job)
        finally:
            if job.acct is not None:
                self._settle_rest(job.acct)

    def _sender_idle(self) -> None:
        """The sender finished a job: start the parked batch at once, wake the worker."""
        if self.ready is not None:
            if time.monotonic() >= self.next_attempt and not self._past_upload_budget():
                self._submit_ready()
            else:
                self._spill_ready()
        if self.wakeup is not None:
            self.wakeup()

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

    def _run_own(self, job: Job) -> None:
        acct = job.acct
        assert acct is not None
        lines = job.lines
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
            with self.lock:
                self.sent_bytes += sum(len(x) for x in lines)
        if result.failed:
            self._failed_result(result)
            self._spill(result.failed, acct)
        else:
            self._succeeded(job)

    def _run_replay(self, job: Job) -> None:
        claim = job.claim
        assert claim is not None
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
        self._succeeded(job)

    def _succeeded(self, job: Job | None = None) -> None:
        with self.lock:
            if job is None or not job.slow:
                self.failures = 0
            self.next_attempt = 0.0
            self.last_success = time.time()
        if self.spool is not None and self.spool.config_error:
            with _guard.guard("spool.config_ok"):
                self.spool.clear_config_error()

    def _failed_result(self, result: SendResult | None) -> None:
        if result is None:
            self._failed(None, "internal error")
            return
        self._failed(result.retry_after, result.error)
        if result.config_error:
            self._config_error(result.error or "configuration error")

    def _failed(self, retry_after: float | None, error: str | None) -> None:
        with self.lock:
            self.failures += 1
            self.retries += 1
            self.last_error = error
            # Full jitter (AWS architecture blog): spreads a fleet's retries out.
            cap = min(self.settings.max_backoff, 0.5 * 2 ** min(self.failures, 16))
            delay = random.uniform(0, cap)
            if retry_after is not None:
                delay = max(delay, retry_after)
            self.next_attempt = time.monotonic() + delay

    def _config_error(self, message: str) -> None:
        """A 401/403/404: keep the data, say what is wrong and how to fix it (rate-limited)."""
        if self.spool is not None:
            with _guard.guard("spool.config_error"):
                self.spool.mark_config_error(origin_of(self.http.url if self.http else ""))
        now = time.monotonic()
        if self._config_warned and now - self._config_warned < _CONFIG_WARN_EVERY:
            return
        self._config_warned = now
        where = f" in the spool ({self.spool.dir})" if self.spool is not None else " in memory"
        logger.warning(
            "logos_shift: %s. Records are kept%s and sent as soon as a process runs with "
            "the right settings.",
            message,
            where,
        )

    # -- the spool -----------------------------------------------------------------

    def _spill(self, lines: list[bytes], acct: BatchAccount) -> None:
        """Spool a batch; hold it in memory if the spool is unusable."""
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

    def _spool_due(self, now: float) -> bool:
        return self.spool is not None and now >= self._spool_next

    def _past_upload_budget(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    def _maybe_replay(self, now: float) -> None:
        spool = self.spool
        if spool is None or self.deadline is not None:
            return
        if not self._spool_due(now) and not self.flush_requested:
            return
        if not spool.config_error and now >= self._adopt_next:
            # Batches that a server at the same address refused for a
            # configuration error (a wrong key or URL) are taken over by a
            # process not known to be misconfigured itself; should the
            # server refuse this one too, its spool gets the marker and the
            # batches wait for the next process.
            self._adopt_next = now + _SPOOL_IDLE_CHECK
            assert self.http is not None
            with _guard.guard("spool.adopt"):
                spool.adopt(origin_of(self.http.url))
        # A few batches per second keeps a recovering server from a stampede
        # of every process replaying its whole backlog at once; the pace is
        # faster with a short flush interval, so the backlog always drains
        # several times faster than an outage grew it.
        pace = min(1.0, 2 * self.settings.flush_interval)
        if now >= self._replay_window:
            self._replay_window = now + pace * random.uniform(0.8, 1.2)
            self._replay_count = 0
        if self._replay_count >= _REPLAY_PER_TICK:
            self._spool_next = self._replay_window
            return
        claim = None
        with _guard.guard("spool.replay"):
            claim = spool.claim_oldest()
        if claim is None:
            # An empty spool is looked at again now and then: other processes
            # sharing it, or an earlier run of this program, may leave batches.
            self._spool_next = now + _SPOOL_IDLE_CHECK
            return
        self._replay_count += 1
        if not self._submit(Job("replay", claim.lines, claim=claim)):
            claim.release()


def origin_of(url: str) -> str:
    """``scheme://host:port`` of a URL: the server, whatever path it was given."""
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return url
    return f"{parts.scheme}://{(parts.hostname or '').lower()}:{port}"
