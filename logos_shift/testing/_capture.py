"""``capture_records()``: see exactly what logos_shift would write, in memory.

Built on the public API only: a :class:`logos_shift.MemorySink` behind a fresh
:class:`logos_shift.LogosShift` made the process default for the block.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import logos_shift


class Captured:
    """Records captured inside a :func:`capture_records` block.

    Attributes:
        client: the instance the block's captures go to.
        sink: its in-memory sink.
    """

    def __init__(self, client: logos_shift.LogosShift, sink: logos_shift.MemorySink) -> None:
        self.client = client
        self.sink = sink

    @property
    def records(self) -> list[dict[str, Any]]:
        """Flush, then return every record as decoded from its JSON line."""
        self.client.flush(timeout=10)
        return self.sink.records()

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
        self.sink.clear()


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
    sink = logos_shift.MemorySink()
    client = logos_shift.LogosShift(sink=sink, **settings)
    try:
        with client.as_default():
            yield Captured(client, sink)
            client.flush(timeout=10)
    finally:
        client.shutdown(timeout=5)
