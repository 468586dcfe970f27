"""The one background thread per process, shared by every LogosShift instance.

Started lazily on the first capture (so a pre-fork master such as gunicorn's
never owns it), rebuilt in forked children (``os.register_at_fork``), a daemon
so it can never keep the interpreter alive, and flushed at exit by both
``atexit`` and ``multiprocessing``'s finalisers (fork children of
multiprocessing leave through ``os._exit`` and skip ``atexit``).  Every wait
has a deadline.
"""

from __future__ import annotations

import atexit
import os
import threading
import time
from collections.abc import Callable

from logos_shift import _guard

from .channel import Channel

PeriodicTask = Callable[[float], float]  # now -> seconds until next call


class Worker:
    """Drives every channel and periodic task from one daemon thread."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.channels: list[Channel] = []
        self.tasks: dict[int, tuple[PeriodicTask, list[float]]] = {}
        self.thread: threading.Thread | None = None
        self.pid = os.getpid()
        self.stopping = False
        self.exit_registered = False

    # -- registration --------------------------------------------------------

    def add(self, channel: Channel) -> None:
        """Register a channel (the thread starts on the first capture)."""
        with self.lock:
            if channel not in self.channels:
                self.channels.append(channel)
        self._register_exit()

    def remove(self, channel: Channel) -> None:
        """Forget a channel after its shutdown."""
        with self.lock:
            if channel in self.channels:
                self.channels.remove(channel)

    def add_task(self, key: int, task: PeriodicTask) -> None:
        """Run ``task(now)`` on the worker thread; it returns its next delay."""
        with self.lock:
            self.tasks[key] = (task, [0.0])
        # The thread still starts lazily (first capture or flush), so a
        # pre-fork master that only configures logos_shift owns no thread.
        if self.thread is not None:
            self.wake.set()

    def remove_task(self, key: int) -> None:
        """Stop calling a periodic task."""
        with self.lock:
            self.tasks.pop(key, None)

    def ensure_started(self) -> None:
        """Start the thread if it is not running in this process.

        The fast path is one attribute check: the fork hook resets ``thread``
        in children, and ``flush`` re-checks liveness, so the hot path needs
        neither ``os.getpid()`` nor ``is_alive()``.
        """
        if self.thread is None:
            self._start()

    def _start(self) -> None:
        with self.lock:
            if self.thread is not None or self.stopping:
                return
            thread = threading.Thread(target=self._run, name="logos-shift-worker", daemon=True)
            try:
                thread.start()
            except RuntimeError:
                # Interpreter shutdown (Python >= 3.12 refuses new threads):
                # the exit flush drains inline instead.
                return
            self.thread = thread

    def notify(self) -> None:
        """Wake the thread (a batch filled up or a flush was asked for)."""
        self.ensure_started()
        self.wake.set()

    # -- the loop ------------------------------------------------------------

    def _run(self) -> None:
        while not self.stopping:
            # Cleared before the step, so a notify() arriving during the step
            # is not lost and the next wait returns at once.
            self.wake.clear()
            timeout = self.step()
            self.wake.wait(timeout)

    def step(self) -> float:
        """Serve every due channel and task once; return seconds to sleep."""
        now = time.monotonic()
        with self.lock:
            channels = list(self.channels)
            tasks = list(self.tasks.values())
        wait = 1.0
        for ch in channels:
            with _guard.guard("worker.channel"):
                if ch.due(now):
                    ch.tick(now)
                wait = min(wait, ch.next_wakeup(time.monotonic()))
        for task, due in tasks:
            now = time.monotonic()
            if now >= due[0]:
                delay = 1.0
                with _guard.guard("worker.task"):
                    delay = task(now)
                due[0] = now + max(0.05, delay)
            wait = min(wait, max(0.0, due[0] - time.monotonic()))
        return max(0.01, wait)

    # -- flush and exit --------------------------------------------------------

    def flush(self, channel: Channel, timeout: float) -> bool:
        """Deliver or spool everything queued on ``channel`` within ``timeout``."""
        deadline = time.monotonic() + max(0.0, timeout)
        with channel.done:
            channel.flush_requested = True
        if not self._thread_usable():
            return self._drain_inline(channel, deadline)
        self.wake.set()
        with channel.done:
            while channel.pending() or channel.flush_requested:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                channel.done.wait(min(remaining, 0.05))
                if channel.pending():
                    # A tick that began before this flush may have cleared
                    # the request while later records were still queued.
                    channel.flush_requested = True
                self.wake.set()
        return True

    def close(self, channel: Channel, timeout: float) -> bool:
        """Final flush: upload until 60% of ``timeout``, then spool the rest."""
        start = time.monotonic()
        timeout = max(0.0, timeout)
        channel.deadline = start + 0.6 * timeout
        ok = self.flush(channel, 0.6 * timeout)
        with channel.lock:
            channel.closed = True  # later captures are counted, not stranded
        if not ok or channel.pending():
            # Spills the queue, the held batches and the batch of an upload
            # that is stuck (a black-holed server): the worker's late result
            # for it is ignored.
            with _guard.guard("close.spill"):
                channel.spill_queue()
            # A batch the worker is still encoding goes straight to the spool
            # (the upload budget is spent); wait for it within the timeout.
            end = start + timeout
            while channel.inflight and time.monotonic() < end:
                time.sleep(0.01)
            ok = channel.pending() == 0
        self.remove(channel)
        channel.close()
        return ok

    def _thread_usable(self) -> bool:
        t = self.thread
        if t is None or self.pid != os.getpid() or not t.is_alive():
            with self.lock:
                if self.thread is t:
                    self.thread = None
            self.ensure_started()
            t = self.thread
        return t is not None and t.is_alive() and threading.current_thread() is not t

    def _drain_inline(self, channel: Channel, deadline: float) -> bool:
        if channel.deadline is None:
            channel.deadline = deadline
        with _guard.guard("flush.inline"):
            channel.tick(time.monotonic())
        if channel.pending():
            with _guard.guard("flush.inline.spill"):
                channel.spill_queue()
        with channel.done:
            channel.flush_requested = False
        return channel.pending() == 0

    def shutdown_all(self, timeout: float | None = None) -> None:
        """Exit flush of every channel, sharing one deadline."""
        with self.lock:
            channels = list(self.channels)
        if not channels:
            return
        total = (
            timeout if timeout is not None else max(c.settings.shutdown_timeout for c in channels)
        )
        end = time.monotonic() + total
        for ch in channels:
            self.close(ch, max(0.0, end - time.monotonic()))
        self.stopping = True
        self.wake.set()

    def _register_exit(self) -> None:
        if self.exit_registered:
            return
        self.exit_registered = True
        atexit.register(_exit_flush)
        _register_finalizer()

    def after_fork_in_child(self) -> None:
        """Fresh thread state in a child; channels keep their settings."""
        channels = self.channels
        tasks = self.tasks
        self._reset()
        self.tasks = tasks
        for ch in channels:
            ch.reset_after_fork()
            self.channels.append(ch)
        if channels:
            self._register_exit()


WORKER = Worker()
_afterfork_hooked = False


def _exit_flush() -> None:
    with _guard.guard("exit_flush"):
        WORKER.shutdown_all()


def _register_finalizer(_: object = None) -> None:
    """Exit flush for multiprocessing children, which leave through ``os._exit``.

    A multiprocessing child clears the finalisers it inherited *after* the
    ``os.register_at_fork`` hooks ran, so the finaliser is registered again
    from multiprocessing's own after-fork hook.
    """
    global _afterfork_hooked
    try:
        from multiprocessing import util

        util.Finalize(None, _exit_flush, exitpriority=100)
        if not _afterfork_hooked:  # the hook is inherited by every descendant
            _afterfork_hooked = True
            util.register_after_fork(WORKER, _register_finalizer)
    except Exception:  # noqa: BLE001 - multiprocessing may be unavailable
        _guard.report("worker.finalize")


def _after_fork() -> None:
    with _guard.guard("fork"):
        WORKER.after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)
