"""What every command prints: lines, errors, JSON, tables that fit the terminal, progress.

Data goes to stdout (so ``| head`` and ``> file`` work), messages and progress to
stderr.  ``--json`` prints one JSON document instead of the human text.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

__all__ = [
    "Progress",
    "ago",
    "err",
    "fit_width",
    "out",
    "print_json",
    "table",
    "when",
    "width",
]


def out(text: str = "") -> None:
    """Print a line of data on stdout (flushed, so it shows before a slow step)."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def err(text: str) -> None:
    """Print ``error: text`` on stderr."""
    sys.stderr.write(f"error: {text}\n")
    sys.stderr.flush()


def note(text: str) -> None:
    """Print a message (not data) on stderr."""
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def print_json(doc: Any) -> None:
    """Print ``doc`` as indented JSON on stdout."""
    out(json.dumps(doc, indent=2, ensure_ascii=False, sort_keys=False, default=str))


def width() -> int | None:
    """The width tables must fit: ``$COLUMNS``, else the terminal's; ``None`` when piped.

    A table written to a pipe or file is not cut, so ``grep`` sees every value.
    """
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    if sys.stdout.isatty():
        return shutil.get_terminal_size((100, 24)).columns
    return None


def fit_width(text: str, limit: int | None) -> str:
    """Cut ``text`` to ``limit`` characters, marking the cut with ``…``."""
    if limit is None or len(text) <= limit:
        return text
    return text[: max(0, limit - 1)] + "…"


def table(
    headers: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    right: Sequence[int] = (),
    limit: int | None = None,
) -> None:
    """Print an aligned table whose lines fit :func:`width` (the last column is cut).

    Args:
        headers: column titles.
        rows: the cells (``None`` shows as ``-``).
        right: indexes of right-aligned (numeric) columns.
        limit: the width to fit (default: :func:`width`).
    """
    limit = width() if limit is None else limit
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        parts = []
        for i, v in enumerate(values):
            last = i == len(values) - 1
            if i in right:
                parts.append(v.rjust(widths[i]))
            else:
                parts.append(v if last else v.ljust(widths[i]))
        return fit_width("  ".join(parts).rstrip(), limit)

    out(line(headers))
    for r in cells:
        out(line(r))


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}".rstrip("0").rstrip(".") if value != int(value) else str(int(value))
    return " ".join(str(value).split())  # one line per row


def when(ts: float | None) -> str:
    """Format a Unix time as ``2026-01-31 12:00:00`` (UTC)."""
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def ago(seconds: float) -> str:
    """Format a duration as ``42 s``, ``3 min``, ``5 h`` or ``2 days``."""
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 36 * 3600:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} days"


class Progress:
    """Shows that a wait is still going: a live line on a terminal, else a line now and then.

    Nothing shows for a wait under a second.  On a terminal the line on stderr is
    rewritten every second (``waiting for the job: running (12 s)``); in a log
    (stderr not a terminal) a line is printed after a second and then every
    ``every`` seconds, so CI logs show a long wait without flooding.

    Args:
        what: what is awaited, e.g. ``"the fine-tuning job"``.
        every: seconds between lines when stderr is not a terminal.
    """

    def __init__(self, what: str, every: float = 15.0) -> None:
        self.what = what
        self.state = ""
        self._every = every
        self._start = time.monotonic()
        self._shown_at: float | None = None
        self._tty = sys.stderr.isatty()
        self._live = False

    def update(self, state: str = "") -> None:
        """Note the current state and show it if the wait is long enough.

        Args:
            state: a few words, e.g. the job's status.
        """
        self.state = state
        now = time.monotonic()
        elapsed = now - self._start
        if elapsed < 1.0:
            return
        text = f"waiting for {self.what}" + (f": {state}" if state else "") + f" ({elapsed:.0f} s)"
        if self._tty:
            sys.stderr.write("\r" + text[: shutil.get_terminal_size((100, 24)).columns - 1])
            sys.stderr.write("\033[K")
            sys.stderr.flush()
            self._live = True
        elif self._shown_at is None or now - self._shown_at >= self._every:
            note(text)
            self._shown_at = now

    def clear(self) -> None:
        """Remove the live line (before printing something else, and at the end)."""
        if self._live:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()
            self._live = False


@contextmanager
def progress(what: str) -> Iterator[Progress]:
    """Show progress while a single blocking step runs (a ticker thread updates it).

    Args:
        what: what is awaited.

    Yields:
        The progress line (``.update(state)`` changes its text).
    """
    p = Progress(what)
    stop = threading.Event()

    def tick() -> None:
        while not stop.wait(0.5):
            p.update(p.state)

    thread = threading.Thread(target=tick, name="logos-shift-progress", daemon=True)
    thread.start()
    try:
        yield p
    finally:
        stop.set()
        thread.join(2)
        p.clear()
