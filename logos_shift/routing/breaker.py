"""Client-side circuit breaker per (route, variant).

LiteLLM-style: ``consecutive_errors`` failures in a row, or an error rate above
``error_rate`` once ``min_calls`` calls landed within ``window_s``, opens the
breaker.  While open, the variant's traffic goes to control.  After
``cooldown_s`` one call is let through as a half-open probe: success closes
the breaker, failure opens it again for another cooldown.  A probe whose result
never arrives (the caller crashed) is replaced by a new probe after one more
cooldown, so a lost probe cannot pin a variant off forever.

All mutation happens under one lock held for a few attribute updates (no I/O).
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

from .config import BreakerConfig

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half_open"

#: ``Breaker.allow`` verdicts.
PASS = "pass"
PROBE = "probe"
BLOCK = "block"


class Breaker:
    """The state of one variant's breaker; use through :class:`BreakerBoard`."""

    __slots__ = (
        "calls",
        "consecutive",
        "errors",
        "open_until",
        "opened_at",
        "probe_started",
        "state",
        "trips",
        "window",
    )

    def __init__(self) -> None:
        self.state = CLOSED
        self.consecutive = 0
        # (second, calls, errors) buckets; totals kept alongside to stay O(1).
        self.window: deque[list[int]] = deque()
        self.calls = 0
        self.errors = 0
        self.opened_at: float | None = None
        self.open_until = 0.0
        self.probe_started: float | None = None
        self.trips = 0

    def _prune(self, now: float, window_s: float) -> None:
        oldest = int(now - window_s)
        while self.window and self.window[0][0] <= oldest:
            _, calls, errors = self.window.popleft()
            self.calls -= calls
            self.errors -= errors

    def _count(self, ok: bool, now: float, cfg: BreakerConfig) -> None:
        second = int(now)
        if self.window and self.window[-1][0] == second:
            slot = self.window[-1]
        else:
            slot = [second, 0, 0]
            self.window.append(slot)
        slot[1] += 1
        self.calls += 1
        if not ok:
            slot[2] += 1
            self.errors += 1
        self._prune(now, cfg.window_s)

    def _trip(self, now: float, cfg: BreakerConfig) -> None:
        self.state = OPEN
        self.opened_at = now
        self.open_until = now + cfg.cooldown_s
        self.probe_started = None
        self.trips += 1
        self.consecutive = 0
        self.window.clear()
        self.calls = self.errors = 0

    def _close(self) -> None:
        self.state = CLOSED
        self.opened_at = None
        self.probe_started = None
        self.consecutive = 0
        self.window.clear()
        self.calls = self.errors = 0

    def allow(self, now: float, cfg: BreakerConfig) -> str:
        """Return PASS, PROBE (let this one call through) or BLOCK (send to control)."""
        if self.state == CLOSED:
            return PASS
        if self.state == OPEN:
            if now < self.open_until:
                return BLOCK
            self.state = HALF_OPEN
            self.probe_started = now
            return PROBE
        if self.probe_started is not None and now - self.probe_started < cfg.cooldown_s:
            return BLOCK
        self.probe_started = now
        return PROBE

    def record(self, ok: bool, now: float, cfg: BreakerConfig) -> None:
        """Count one finished variant call and move the state machine."""
        if self.state == HALF_OPEN:
            if ok:
                self._close()
            else:
                self._trip(now, cfg)
            return
        if self.state == OPEN:
            # A call that started before the trip; the cooldown already covers it.
            return
        self._count(ok, now, cfg)
        if ok:
            self.consecutive = 0
            return
        self.consecutive += 1
        by_streak = bool(cfg.consecutive_errors) and self.consecutive >= cfg.consecutive_errors
        by_rate = (
            cfg.error_rate is not None
            and self.calls >= cfg.min_calls
            and self.errors / self.calls > cfg.error_rate
        )
        if by_streak or by_rate:
            self._trip(now, cfg)

    def snapshot(self, now: float) -> dict[str, Any]:
        """Return the breaker's state for ``stats()``."""
        return {
            "state": self.state,
            "consecutive_errors": self.consecutive,
            "window_calls": self.calls,
            "window_errors": self.errors,
            "trips": self.trips,
            "open_remaining_s": round(max(0.0, self.open_until - now), 3)
            if self.state == OPEN
            else 0.0,
        }


class BreakerBoard:
    """All breakers of a router, keyed by ``(route, variant)``.

    ``tripped`` holds only the breakers that are not closed and is replaced,
    never mutated, so the decision path can read it without the lock and skip
    the breaker entirely in the common case (nothing tripped).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._breakers: dict[tuple[str, str], Breaker] = {}
        self.tripped: dict[tuple[str, str], Breaker] = {}

    def _publish(self) -> None:
        self.tripped = {k: b for k, b in self._breakers.items() if b.state != CLOSED}

    def allow(self, key: tuple[str, str], now: float, cfg: BreakerConfig) -> str:
        """Ask whether a call may go to the variant ``key`` now (see :meth:`Breaker.allow`)."""
        with self._lock:
            breaker = self._breakers.get(key)
            if breaker is None:
                return PASS
            verdict = breaker.allow(now, cfg)
        return verdict

    def record(self, key: tuple[str, str], ok: bool, now: float, cfg: BreakerConfig) -> None:
        """Count a finished call of variant ``key``; publish state changes."""
        with self._lock:
            breaker = self._breakers.get(key)
            if breaker is None:
                if ok and cfg.error_rate is None:
                    # Without a rate trigger, successes before any failure carry no state.
                    return
                breaker = self._breakers[key] = Breaker()
            before = breaker.state
            breaker.record(ok, now, cfg)
            if breaker.state != before:
                self._publish()

    def retain(self, keep: set[tuple[str, str]]) -> None:
        """Forget breakers of variants that left the config or changed their target."""
        with self._lock:
            for key in [k for k in self._breakers if k not in keep]:
                del self._breakers[key]
            self._publish()

    def snapshot(self, now: float) -> dict[str, dict[str, Any]]:
        """Return ``{"route/variant": state}`` for every breaker with any history."""
        with self._lock:
            return {f"{r}/{v}": b.snapshot(now) for (r, v), b in self._breakers.items()}
