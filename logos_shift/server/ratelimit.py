"""Rate limits in one process: a token bucket per API key, a slow-down per client address.

Both are plain in-memory tables guarded by a lock (the auth dependency runs in
the thread pool), bounded in size: the oldest entries are forgotten first, so a
flood of distinct addresses or keys cannot grow memory without limit.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from .settings import RateLimits

__all__ = ["RateLimiter", "retry_after"]

_MAX_ENTRIES = 100_000
_MAX_BLOCK_S = 3600.0


class RateLimiter:
    """Token buckets per key and bad-key counters per address.

    Args:
        limits: the configured rates.
        clock: a monotonic clock (seconds).
    """

    def __init__(self, limits: RateLimits, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self._clock = clock
        self._lock = threading.Lock()
        #: key id -> (tokens, last refill)
        self._buckets: OrderedDict[int, tuple[float, float]] = OrderedDict()
        #: address -> (failures in window, window start, blocked until, current block length)
        self._bad: OrderedDict[str, tuple[int, float, float, float]] = OrderedDict()

    def take(self, key_id: int, scope: str) -> float:
        """Take one token from a key's bucket.

        Args:
            key_id: the API key.
            scope: the key's scope (``"ingest"`` or ``"admin"``), which sets its rate.

        Returns:
            0.0 when the request may go ahead, else the seconds until a token is available.
        """
        rate, burst = (
            (self.limits.admin_per_s, self.limits.admin_burst)
            if scope == "admin"
            else (self.limits.ingest_per_s, self.limits.ingest_burst)
        )
        if rate <= 0:
            return 0.0
        now = self._clock()
        with self._lock:
            tokens, last = self._buckets.pop(key_id, (float(burst), now))
            tokens = min(float(burst), tokens + (now - last) * rate)
            wait = 0.0
            if tokens >= 1.0:
                tokens -= 1.0
            else:
                wait = (1.0 - tokens) / rate
            self._buckets[key_id] = (tokens, now)
            _trim(self._buckets)
        return wait

    def blocked(self, address: str) -> float:
        """Return how many more seconds ``address`` is slowed down (0.0: not at all).

        Args:
            address: the client's address.

        Returns:
            Seconds.
        """
        if self.limits.bad_keys_per_address <= 0:
            return 0.0
        with self._lock:
            entry = self._bad.get(address)
        if entry is None:
            return 0.0
        return max(0.0, entry[2] - self._clock())

    def failed(self, address: str) -> None:
        """Count a missing or wrong key from ``address`` (may start a block).

        Args:
            address: the client's address.
        """
        allowed = self.limits.bad_keys_per_address
        if allowed <= 0:
            return
        now = self._clock()
        window = self.limits.bad_key_window_s
        with self._lock:
            count, start, until, block = self._bad.pop(address, (0, now, 0.0, 0.0))
            if now - start > window:
                # A new window counts afresh; a repeat offender's block keeps doubling
                # until it stays quiet for a whole window after its last block.
                if now - until > window:
                    block = 0.0
                count, start = 0, now
            count += 1
            if count >= allowed:
                block = min(_MAX_BLOCK_S, block * 2 if block else self.limits.bad_key_block_s)
                until = now + block
                count, start = 0, now
            self._bad[address] = (count, start, until, block)
            _trim(self._bad)


def retry_after(seconds: float) -> str:
    """Format a ``Retry-After`` value: whole seconds, at least 1.

    Args:
        seconds: the wait.

    Returns:
        The header value.
    """
    return str(max(1, math.ceil(seconds)))


def _trim(table: OrderedDict[Any, Any]) -> None:
    while len(table) > _MAX_ENTRIES:
        table.popitem(last=False)
