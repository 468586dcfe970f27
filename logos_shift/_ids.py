"""UUIDv7 ids: time-ordered, so the server's index stays append-mostly."""

from __future__ import annotations

import random
import threading
import time

from . import _guard

_lock = threading.Lock()
_last_ms = 0
_seq = 0


def new_id() -> str:
    """Return a new UUIDv7 string (RFC 9562), monotonic within the process."""
    global _last_ms, _seq
    _guard.fault("ids")
    ms = time.time_ns() // 1_000_000
    with _lock:
        if ms <= _last_ms:
            # Same millisecond (or the clock stepped back): bump a 12-bit
            # sequence so ids stay strictly increasing in this process.
            _seq += 1
            if _seq > 0xFFF:
                _last_ms += 1
                _seq = 0
            ms = _last_ms
        else:
            _last_ms = ms
            _seq = random.getrandbits(11)
        seq = _seq
    # random's global generator is reseeded in forked children by CPython
    # itself, and avoids two urandom syscalls per id on the hot path.
    rand = random.getrandbits(62)
    value = (ms & 0xFFFF_FFFF_FFFF) << 80 | 0x7 << 76 | seq << 64 | 0b10 << 62 | rand
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
