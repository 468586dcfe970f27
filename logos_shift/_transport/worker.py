"""The background threads of a process, shared by every LogosShift instance.

One *worker* thread drives the data path (encoding, local copies, spills; the
uploads themselves run on each channel's sender thread, see
:mod:`logos_shift._transport.upload`).  Control traffic (the routing config
polls) runs on its own *control* thread, so a hung or slow upload never delays
a config refresh and a dead config server never slows the data path; a thread
rather than a non-blocking poll because the config fetch uses blocking
``requests`` like the uploads, and one more idle thread costs nothing
measurable.

Both threads are started lazily on the first capture (so a pre-fork master such as gunicorn's
never owns it), rebuilt in forked children (``os.register_at_fork``), a daemon
so it can never keep the interpreter alive, and flushed at exit by both
``atexit`` and ``multiprocessing``'s finalisers (fork children of
multiprocessing leave through ``os._exit`` and skip ``atexit``).  Every wait
has a deadline.

In ``multiprocessing`` children, a SIGTERM (``Pool.terminate()``, leaving a
``with Pool() as p:`` block) would kill the process before any exit hook
runs; a handler installed only there spills the queue to the spool within
``shutdown_timeout`` and then dies of SIGTERM as before.  If the process
already had a SIGTERM handler of its own (a graceful server), the queue is
flushed instead (uploaded, or spooled past the deadline) and that handler is
then called: it decides how the process ends.
"""

from __future__ import annotations

import atexit
import os
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

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
        self.control: threading.Thread | None = None
        self.control_wake = threading.Event()
        self.pid = os.getpid()
        self.stopping = False
        self.exit_registered = False

    # -- registration --------------------------------------------------------

    def add(self, channel: Channel) -> None:
        """Register a channel (the thread starts on the first capture)."""
        channel.wakeup = self.wake.set
        with self.lock:
            if channel not in self.channels:
                self.channels.append(channel)
        self._register_exit()
        _install_sigterm_handler()

    def remove(self, channel: Channel) -> None:
        """Forget a channel after its shutdown."""
        with self.lock:
            if channel in self.channels:
                self.channels.remove(channel)

    def add_task(self, key: int, task: PeriodicTask) -> None:
        """Run ``task(now)`` on the control thread; it returns its next delay."""
        with self.lock:
            self.tasks[key] = (task, [0.0])
        # The threads still start lazily (first capture or flush), so a
        # pre-fork master that only configures logos_shift owns no thread.
        if self.thread is not None:
            self._start_control()
            self.control_wake.set()

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
        self._start_control()
        # Also here, at the first capture: a spawned child creates its
        # instances while importing the main module, before multiprocessing
        # tells it that it is a child.
        _install_sigterm_handler()

    def _start_control(self) -> None:
        with self.lock:
            if self.control is not None or self.stopping or not self.tasks:
                return
            thread = threading.Thread(target=self._run_control, name="logos-shift-control",
                                      daemon=True)  # fmt: skip
            try:
                thread.start()
            except RuntimeError:
                return
            self.control = thread

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

    def _run_control(self) -> None:
        while not self.stopping:
            self.control_wake.clear()
            timeout = self.step_tasks()
            self.control_wake.wait(timeout)

    def step(self) -> float:
        """Serve every due channel once; return seconds to sleep."""
        now = time.monotonic()
        with self.lock:
            channels = list(self.channels)
        wait = 1.0
        for ch in channels:
            with _guard.guard("worker.channel"):
                if ch.due(now):
                    ch.tick(now)
                wait = min(wait, ch.next_wakeup(time.monotonic()))
        return max(0.01, wait)

    def step_tasks(self) -> float:
        """Run every due periodic task once (control thread); return seconds to sleep."""
        with self.lock:
            tasks = list(self.tasks.values())
        wait = 1.0
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
        end = start + timeout
        if not ok or channel.pending():
            # Spills the queue (in chunks, within the deadline), the held
            # batches and the batch of an upload that is stuck (a
            # black-holed server): the sender's late result for it is ignored.
            with _guard.guard("close.spill"):
                channel.spill_queue(end)
            # A batch the worker is still encoding goes straight to the spool
            # (the upload budget is spent); wait for it within the timeout.
            while channel.inflight and time.monotonic() < end:
                time.sleep(0.01)
            ok = channel.pending() == 0
        # A replay from the spool may still be running: let it settle (its
        # file is deleted or put back) before the connections close.
        while channel.sender.busy() and time.monotonic() < end:
            time.sleep(0.01)
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
        channel.inline = True  # no thread to rely on: upload on this one
        try:
            with _guard.guard("flush.inline"):
                channel.tick(time.monotonic())
        finally:
            channel.inline = False
        if channel.pending():
            with _guard.guard("flush.inline.spill"):
                channel.spill_queue(deadline)
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
        self.control_wake.set()

    def flush_all(self, timeout: float) -> None:
        """Deliver or spool what every channel has queued, sharing one deadline; stay open."""
        with self.lock:
            channels = list(self.channels)
        end = time.monotonic() + max(0.0, timeout)
        for ch in channels:
            self.flush(ch, max(0.0, end - time.monotonic()))

    def spill_all(self, timeout: float) -> None:
        """Spool everything in memory at once, skipping uploads (a SIGTERM is ending us)."""
        with self.lock:
            channels = list(self.channels)
        end = time.monotonic() + max(0.0, timeout)
        for ch in channels:
            ch.deadline = time.monotonic()  # the upload budget is spent
            with ch.lock:
                ch.closed = True
            with _guard.guard("sigterm.spill"):
                ch.spill_queue(end)
            # An own upload was taken over above; a replay still running is
            # let finish, so its claim is deleted or put back, not left behind.
            while (ch.inflight or ch.sender.busy()) and time.monotonic() < end:
                time.sleep(0.01)
        self.stopping = True
        self.wake.set()
        self.control_wake.set()

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
            _install_sigterm_handler()


WORKER = Worker()
_afterfork_hooked = False
_previous_sigterm: Any = None
_exiting = False  # the exit flush has begun (a SIGTERM then lets it finish)
_sigterm_installed_pid = 0


def _exit_flush() -> None:
    global _exiting
    _exiting = True
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
        # multiprocessing knows it is in a child only from here on.
        _install_sigterm_handler()
        if not _afterfork_hooked:  # the hook is inherited by every descendant
            _afterfork_hooked = True
            util.register_after_fork(WORKER, _register_finalizer)
    except Exception:  # noqa: BLE001 - multiprocessing may be unavailable
        _guard.report("worker.finalize")


def _install_sigterm_handler() -> None:
    """In a multiprocessing child's main thread, spill the queue on SIGTERM.

    Only there: in a main process the application owns SIGTERM (servers
    install their own graceful handlers and the exit flush then runs); a
    multiprocessing child is terminated with SIGTERM by its pool and would
    otherwise die with its queue.  An ignored SIGTERM stays ignored.
    """
    global _previous_sigterm, _sigterm_installed_pid
    if _sigterm_installed_pid == os.getpid() or not hasattr(signal, "SIGTERM"):
        return
    try:
        import multiprocessing

        if multiprocessing.parent_process() is None:
            return
        if threading.current_thread() is not threading.main_thread():
            return
        previous = signal.getsignal(signal.SIGTERM)
        if previous is None or previous is signal.SIG_IGN or previous is _on_sigterm:
            return  # None: a handler installed from C, which we could not chain to
        signal.signal(signal.SIGTERM, _on_sigterm)
    except (ValueError, OSError, RuntimeError):  # not the main thread, or no signals here
        return
    _previous_sigterm = previous
    _sigterm_installed_pid = os.getpid()


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    if _exiting:
        # The process is already leaving (a pool worker that got its stop
        # sentinel just before the SIGTERM): the exit flush in progress ends
        # within its deadline; spilling now would duplicate its upload.
        return
    previous = _previous_sigterm
    # The work runs on a helper thread joined with a deadline: the main
    # thread may have been interrupted while holding a channel's lock.
    with _guard.guard("sigterm"):
        timeout = max((c.settings.shutdown_timeout for c in WORKER.channels), default=0.0)
        # With a handler of the application's own (a graceful server), the
        # process keeps running a while: deliver what is queued now and stay
        # open (uvicorn, for one, ends by re-raising SIGTERM with the default
        # action, which skips every exit hook).  Without one it dies next:
        # spool everything at once.
        work = WORKER.flush_all if callable(previous) else WORKER.spill_all
        helper = threading.Thread(target=work, args=(timeout,), daemon=True)
        helper.start()
        helper.join(timeout + 0.5)
    if callable(previous):
        previous(signum, frame)
        return
    # The default action: die of SIGTERM, as the pool expects.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def _after_fork() -> None:
    with _guard.guard("fork"):
        WORKER.after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)
