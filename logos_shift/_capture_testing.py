"""``capture_records()``: see exactly what logos_shift would write, in memory."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from . import _client


class Captured:
    """Records captured inside a :func:`capture_records` block."""

    def __init__(self, client: _client.LogosShift, lines: list[bytes]) -> None:
        self.client = client
        self._lines = lines

    @property
    def records(self) -> list[dict[str, Any]]:
        """Flush, then return every record as decoded from its JSON line."""
        self.client.flush(timeout=10)
        return [json.loads(line) for line in list(self._lines)]

    @property
    def calls(self) -> list[dict[str, Any]]:
        """The ``call`` records (flushes first)."""
        return [r for r in self.records if r["type"] == "call"]

    @property
    def feedback(self) -> list[dict[str, Any]]:
        """The ``feedback`` records (flushes first)."""
        return [r for r in self.records if r["type"] == "feedback"]

    def clear(self) -> None:
        """Forget the records captured so far."""
        self.client.flush(timeout=10)
        self._lines.clear()


@contextmanager
def capture_records(**settings: Any) -> Iterator[Captured]:
    """Capture into memory instead of a file or server, for tests.

    Inside the block, a fresh :class:`~logos_shift.LogosShift` is the default
    instance, so patched SDK calls, :func:`logos_shift.provide_feedback` and
    functions decorated with the yielded ``cap.client`` land in ``cap``.

    Args:
        **settings: extra LogosShift settings (e.g. ``capture_content=False``).

    Example:
        >>> import logos_shift
        >>> from logos_shift.testing import capture_records
        >>> with capture_records() as cap:
        ...     @cap.client(dataset="demo")
        ...     def double(x):
        ...         return x * 2
        ...     _ = double(21)
        ...     print(cap.calls[0]["output"])
        42
    """
    lines: list[bytes] = []
    previous = _client._default
    client = _client.LogosShift(_memory=lines, **settings)
    with _client._default_lock:
        _client._default = client
    try:
        yield Captured(client, lines)
    finally:
        client.flush(timeout=10)
        client.shutdown(timeout=5)
        with _client._default_lock:
            _client._default = previous
