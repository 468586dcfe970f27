"""Where batches go: local copies (a JSONL file, memory, your own sink) and the Logos server.

All run on the background thread only.  The HTTP sink never sleeps: it
reports what happened and the pipeline decides when to try again, so one slow
server cannot hold other instances' batches hostage for a whole backoff.
"""

from __future__ import annotations

import email.utils
import gzip
import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from logos_shift import _guard

RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
#: Answers that say the client is configured wrongly (key, scope, URL), not that
#: the records are bad: the batch is kept (spooled) until the configuration is fixed.
CONFIG_ERROR_STATUS = frozenset({401, 403, 404})
_MAX_RETRY_AFTER = 300.0


@runtime_checkable
class Sink(Protocol):
    """A local destination for records, such as :class:`MemorySink` or your own.

    ``write`` is called on the background thread with each batch, as the
    compact JSON lines (UTF-8, no newline) that the JSONL copy and the server
    receive.  An exception it raises is logged and counted, never raised into
    your code.
    """

    def write(self, lines: list[bytes]) -> None:
        """Take one batch of encoded records."""


class MemorySink:
    """Keeps every record in memory, as the JSON lines the server would receive.

    Pass it as ``LogosShift(sink=MemorySink())``; :func:`logos_shift.testing.capture_records`
    is built on it.  Records arrive on the background thread: call
    ``LogosShift.flush()`` before reading them.

    Example:
        >>> import logos_shift
        >>> sink = logos_shift.MemorySink()
        >>> ls = logos_shift.LogosShift(sink=sink)
        >>> @ls(dataset="demo")
        ... def double(x):
        ...     return x * 2
        >>> double(21)
        42
        >>> ls.flush()
        True
        >>> [r["output"] for r in sink.records()]
        [42]
        >>> ls.shutdown()
        True
    """

    def __init__(self) -> None:
        #: The encoded records, oldest first.
        self.lines: list[bytes] = []

    def write(self, lines: list[bytes]) -> None:
        """Append one batch (called on the background thread)."""
        self.lines.extend(lines)

    def records(self) -> list[dict[str, Any]]:
        """Every record so far, decoded.

        Returns:
            The records as dicts, oldest first.
        """
        return [json.loads(line) for line in list(self.lines)]

    def clear(self) -> None:
        """Forget the records so far."""
        self.lines.clear()


class FileSink:
    """Appends JSON lines to a file, flushed per batch, rotated by size."""

    def __init__(self, path: str, max_bytes: int, backups: int, fsync: bool) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.backups = backups
        self.fsync = fsync
        self._fd: int | None = None
        self._size = 0

    def write(self, lines: list[bytes]) -> None:
        """Append one batch; raises OSError if the disk refuses it."""
        _guard.fault("file_sink")
        if self._fd is None:
            self._open()
        assert self._fd is not None
        payload = b"\n".join(lines) + b"\n"
        # One write() per batch: O_APPEND keeps batches of several processes
        # sharing the file from interleaving mid-line.
        view = memoryview(payload)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        if self.fsync:
            os.fsync(self._fd)
        self._size += len(payload)
        if self._size >= self.max_bytes:
            self._rotate()

    def _open(self) -> None:
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._size = os.fstat(self._fd).st_size

    def _rotate(self) -> None:
        self.close()
        if self.backups == 0:
            self.path.unlink(missing_ok=True)
            return
        for i in range(self.backups - 1, 0, -1):
            src = self.path.with_name(f"{self.path.name}.{i}")
            if src.exists():
                os.replace(src, self.path.with_name(f"{self.path.name}.{i + 1}"))
        os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))

    def close(self) -> None:
        """Close the file (it is reopened on the next write)."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def reset_after_fork(self) -> None:
        """Forget the parent's descriptor without closing the shared file."""
        self._fd = None


@dataclass
class SendResult:
    """Outcome of one upload attempt of a batch (after 413 splitting)."""

    sent: int = 0
    rejected: int = 0
    failed: list[bytes] = field(default_factory=list)
    retry_after: float | None = None
    status: int | None = None
    error: str | None = None
    #: The server refused the request itself (401/403/404): a configuration error.
    config_error: bool = False


class HttpSink:
    """POSTs gzip'd JSON arrays of records to ``{server_url}/v1/ingest``."""

    def __init__(self, server_url: str, api_key: str | None, timeout: float) -> None:
        self.url = server_url.rstrip("/") + "/v1/ingest"
        self.api_key = api_key
        self.timeout = timeout
        self._session: Any = None
        self._closed = False

    def _get_session(self) -> Any:
        if self._session is None:
            import requests

            self._session = requests.Session()
            # Its own Session (never the app's), so nothing the app mounts or
            # patches on its sessions touches the uploads; HTTPS_PROXY and
            # NO_PROXY still apply, as for any requests client.
            self._session.trust_env = True
        return self._session

    def send(self, lines: list[bytes], deadline: float | None = None) -> SendResult:
        """Upload ``lines``; split in halves on 413 until each part fits."""
        result = SendResult()
        self._send(lines, deadline, result)
        return result

    def _send(self, lines: list[bytes], deadline: float | None, result: SendResult) -> None:
        if result.failed:
            result.failed.extend(lines)
            return
        status, retry_after, body, error = self._post(lines, deadline)
        result.status = status
        if status is not None and 200 <= status < 300:
            rejected = _rejected_in(body)
            result.sent += len(lines) - rejected
            result.rejected += rejected
        elif status == 413 and len(lines) > 1:
            mid = len(lines) // 2
            self._send(lines[:mid], deadline, result)
            self._send(lines[mid:], deadline, result)
        elif status in CONFIG_ERROR_STATUS:
            result.failed.extend(lines)
            result.config_error = True
            result.error = self.config_error_message(status, body)
        elif status == 413 or (status is not None and 400 <= status < 500
                               and status not in RETRYABLE_STATUS):  # fmt: skip
            result.rejected += len(lines)
            result.error = f"HTTP {status}"
        else:
            result.failed.extend(lines)
            result.retry_after = retry_after
            result.error = error or f"HTTP {status}"

    def config_error_message(self, status: int, body: bytes) -> str:
        """Name the cause and the fix of a 401/403/404 on ingest."""
        detail = _detail_in(body)
        said = f" ({detail})" if detail else ""
        key = self.api_key or ""
        shown = f"{key[:8]}…" if len(key) > 8 else ("none" if not key else "set")
        if status == 401:
            return (
                f"HTTP 401: the Logos server at {self.url} rejected the API key "
                f"{shown} for its project{said}; fix: set api_key (LOGOS_SHIFT_API_KEY) to a "
                "valid key of the project (logos-shift keys create --project NAME)"
            )
        if status == 403:
            return (
                f"HTTP 403: the Logos server at {self.url} does not let the API key {shown} "
                f"ingest records{said}; fix: use an ingest or admin key of the project"
            )
        return (
            f"HTTP 404: {self.url} does not exist{said}; fix: server_url "
            "(LOGOS_SHIFT_SERVER_URL) must be the server's base URL, such as "
            "http://localhost:8600, without /v1 or another path"
        )

    def _post(
        self, lines: list[bytes], deadline: float | None
    ) -> tuple[int | None, float | None, bytes, str | None]:
        _guard.fault("http_sink")
        import requests

        payload = b"[" + b",".join(lines) + b"]"
        body = gzip.compress(payload, compresslevel=1)
        headers = {
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
            # Derived from the content: the same batch keeps its id across
            # retries, spooling and a replay by another process, so the server
            # (and its logs) can tell a retry from a new batch.
            "X-Batch-Id": hashlib.sha256(payload).hexdigest()[:32],
            "User-Agent": "logos-shift-python",
        }
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        read_timeout = self.timeout
        if deadline is not None:
            read_timeout = max(0.05, min(read_timeout, deadline - time.monotonic()))
        if self._closed:
            # A stuck upload may outlive shutdown: never reopen a pool then.
            return None, None, b"", "closed"
        try:
            resp = self._get_session().post(
                self.url, data=body, headers=headers, timeout=(min(3.0, read_timeout), read_timeout)
            )
        except requests.RequestException as exc:
            return None, None, b"", f"{type(exc).__name__}: {exc}"
        try:
            content = resp.content
        finally:
            resp.close()
        return resp.status_code, parse_retry_after(resp.headers.get("Retry-After")), content, None

    def close(self) -> None:
        """Close pooled connections."""
        self._closed = True
        if self._session is not None:
            session, self._session = self._session, None
            session.close()

    def reset_after_fork(self) -> None:
        """Drop the parent's connection pool: sockets must not be shared."""
        self._session = None
        self._closed = False


def _detail_in(body: bytes) -> str:
    """The server's own explanation in an error answer, shortened ('' if none)."""
    try:
        data = json.loads(body)
    except ValueError:
        return ""
    if not isinstance(data, dict):
        return ""
    detail = data.get("message") or data.get("detail") or data.get("error")
    if isinstance(detail, dict):
        detail = detail.get("message") or detail.get("detail")
    return str(detail)[:200] if isinstance(detail, str) and detail else ""


def _rejected_in(body: bytes) -> int:
    """Count per-record errors in the server's answer (0 if it gave none)."""
    if not body:
        return 0
    try:
        data = json.loads(body)
    except ValueError:
        return 0
    results = data.get("results") if isinstance(data, dict) else None
    if not isinstance(results, list):
        return 0
    return sum(1 for r in results if isinstance(r, dict) and r.get("status") == "error")


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (seconds or HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), _MAX_RETRY_AFTER)
