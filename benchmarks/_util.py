"""Shared helpers for the benchmarks: interleaved timing, percentiles, CPU, RSS, tables.

Benchmarks compare an instrumented call with the bare one *in the same run*,
alternating short blocks of each so that both see the same machine state
(frequency scaling, other processes, cache warmth).  Figures are reported as
ratios or differences against the bare call, never as absolute truths.
"""

from __future__ import annotations

import os
import resource
import statistics
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

__all__ = [
    "Table",
    "fmt",
    "interleaved",
    "interleaved_async",
    "percentile",
    "process_cpu",
    "rss_mib",
    "summary",
    "thread_cpu",
]


def percentile(samples: Sequence[float], q: float) -> float:
    """Return the ``q``-th percentile (0..100) of ``samples``, nearest-rank on sorted data.

    Args:
        samples: the measurements (need not be sorted).
        q: the percentile, 50 for the median, 99 for p99.

    Returns:
        The value at that rank; ``nan`` for no samples.
    """
    if not samples:
        return float("nan")
    data = sorted(samples)
    k = min(len(data) - 1, max(0, round(q / 100.0 * (len(data) - 1))))
    return data[k]


def summary(samples: Sequence[float]) -> dict[str, float]:
    """Return ``p50``, ``p99`` and ``mean`` of ``samples``."""
    return {
        "p50": percentile(samples, 50),
        "p99": percentile(samples, 99),
        "mean": statistics.fmean(samples) if samples else float("nan"),
    }


def interleaved(
    cases: dict[str, Callable[[], object]],
    rounds: int,
    block: int,
    between: Callable[[], object] | None = None,
) -> dict[str, list[float]]:
    """Time single calls of several cases, alternating blocks of each.

    Each round runs ``block`` calls of every case in turn (the order rotates
    each round, so no case always follows another); every call is timed on
    its own with ``perf_counter_ns``.  The clock's own cost (~50-100 ns) is in
    every sample of every case, so it cancels in differences between cases.

    Args:
        cases: name -> zero-argument callable.
        rounds: how many rounds.
        block: calls per case per round.
        between: called after each round, outside the timed region (e.g. a
            flush, so a queue never fills up and starts dropping).

    Returns:
        name -> per-call wall times in microseconds.
    """
    clock = time.perf_counter_ns
    names = list(cases)
    out: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            fn = cases[name]
            samples = out[name]
            append = samples.append
            for _ in range(block):
                t0 = clock()
                fn()
                append((clock() - t0) / 1000.0)
        if between is not None:
            between()
    return out


async def interleaved_async(
    cases: dict[str, Callable[[], Awaitable[object]]],
    rounds: int,
    block: int,
    between: Callable[[], object] | None = None,
) -> dict[str, list[float]]:
    """:func:`interleaved` for coroutine functions, awaited one at a time in the running loop.

    Args:
        cases: name -> zero-argument callable returning an awaitable.
        rounds: how many rounds.
        block: awaits per case per round.
        between: called (synchronously) after each round, outside the timed region.

    Returns:
        name -> per-await wall times in microseconds.
    """
    clock = time.perf_counter_ns
    names = list(cases)
    out: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            fn = cases[name]
            append = out[name].append
            for _ in range(block):
                t0 = clock()
                await fn()
                append((clock() - t0) / 1000.0)
        if between is not None:
            between()
    return out


def process_cpu() -> float:
    """CPU seconds used by the whole process (every thread), ``time.process_time``."""
    return time.process_time()


def thread_cpu(thread: threading.Thread | None = None) -> float:
    """CPU seconds used by ``thread`` (default: the calling thread).

    For another thread this reads its per-thread clock
    (``pthread_getcpuclockid``, Linux and most Unixes); where that is missing
    it returns ``nan`` rather than a wrong figure.

    Args:
        thread: a started thread, or ``None`` for the current one.
    """
    if thread is None or thread is threading.current_thread():
        return time.thread_time()
    ident = thread.ident
    getclock = getattr(time, "pthread_getcpuclockid", None)
    if ident is None or getclock is None:
        return float("nan")
    try:
        return time.clock_gettime(getclock(ident))
    except OSError:
        return float("nan")


def rss_mib() -> float:
    """Current resident set size of this process in MiB (peak RSS where unknown)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / (1024 * 1024)
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


class Table:
    """A markdown table, printed row by row as results come in.

    Args:
        title: printed above the table (a line of its own), or ``""``.
        headers: column headers; a header ending in ``:`` is right-aligned
            (the colon is not printed).
    """

    def __init__(self, title: str, headers: Sequence[str]) -> None:
        self.title = title
        self.headers = [h.rstrip(":") for h in headers]
        self.align = ["---:" if h.endswith(":") else "---" for h in headers]
        self.rows: list[list[str]] = []

    def add(self, *cells: Any) -> None:
        """Add a row; floats are formatted by :func:`fmt`."""
        if len(cells) != len(self.headers):
            raise ValueError(f"expected {len(self.headers)} cells, got {len(cells)}")
        self.rows.append([fmt(c) for c in cells])

    def render(self) -> str:
        """Return the table as markdown text."""
        lines = []
        if self.title:
            lines += [self.title, ""]
        lines.append("| " + " | ".join(self.headers) + " |")
        lines.append("|" + "|".join(self.align) + "|")
        lines += ["| " + " | ".join(r) + " |" for r in self.rows]
        return "\n".join(lines)

    def print(self) -> None:
        """Print the table followed by a blank line, and flush stdout."""
        print(self.render() + "\n", flush=True)


def fmt(value: Any) -> str:
    """Format a cell: floats with a precision that suits their size, ints with separators."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value != value:  # nan
            return "n/a"
        a = abs(value)
        if a >= 1000:
            return f"{value:,.0f}"
        if a >= 100:
            return f"{value:.0f}"
        if a >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}"
    return str(value)
