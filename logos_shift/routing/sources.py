"""Where the routing config comes from: a local JSON file or the Logos server.

Both sources are driven from the outside: ``poll_once(now)`` does the I/O if
the source is due and returns the monotonic time it is due next.  The router
never polls on the call path; the library's background thread does.

A config that fails to parse or validate is rejected with a warning and the
previous one stays in force.  The server source keeps the last good config on
disk (written to a temp file, fsync'd, renamed), loads it at start, and keeps
serving it for as long as the server is away (the fix for growthbook-python
#21, where an expired cache plus an outage meant every flag fell back to its
default).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import requests

from logos_shift import _guard
from logos_shift.errors import ConfigError

from .config import RouterConfig
from .validate import validate_config

logger = logging.getLogger("logos_shift")

#: Called with a newly accepted config and a short description of its origin.
ApplyFn = Callable[[RouterConfig, str], None]

_CACHE_FORMAT = 1


class ConfigPoller(Protocol):
    """A config source the background thread polls."""

    def poll_once(self, now: float, force: bool = False) -> float:
        """Poll if due (or forced); return the monotonic time the next poll is due."""
        ...

    def stats(self) -> dict[str, Any]:
        """Return counters and the source's health for ``stats()``."""
        ...

    def close(self) -> None:
        """Release sockets and files."""
        ...


def _parse(text: str | bytes) -> RouterConfig:
    try:
        obj = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError([f"config: not valid JSON ({exc})"]) from None
    return validate_config(obj)


class FileSource:
    """A local JSON routes file, reloaded when its mtime, size or inode change.

    Args:
        path: the routes file.
        apply: receives each newly accepted config.
        interval: seconds between ``stat`` checks.
    """

    def __init__(self, path: str | os.PathLike[str], apply: ApplyFn, interval: float = 1.0):
        self.path = Path(path)
        self._apply = apply
        self._interval = interval
        self._signature: tuple[int, int, int] | None = None
        self._due = 0.0
        self._loads = 0
        self._rejected = 0
        self._last_error: str | None = None

    def poll_once(self, now: float, force: bool = False) -> float:
        """Reload the file if it changed since the last check.

        Args:
            now: ``time.monotonic()``.
            force: check even if not due.

        Returns:
            The monotonic time of the next check.
        """
        if not force and now < self._due:
            return self._due
        self._due = now + self._interval
        _guard.fault("router.poll")
        try:
            st = os.stat(self.path)
        except OSError as exc:
            if self._signature is not None:
                logger.warning(
                    "logos_shift: routes file %s is unreadable (%s); keeping the previous config",
                    self.path,
                    exc,
                )
                self._signature = None
            self._last_error = f"stat: {exc}"
            return self._due
        signature = (st.st_mtime_ns, st.st_size, st.st_ino)
        if signature == self._signature and not force:
            return self._due
        self._signature = signature
        try:
            config = _parse(self.path.read_bytes())
        except (OSError, ConfigError) as exc:
            self._rejected += 1
            self._last_error = str(exc)
            logger.warning(
                "logos_shift: routes file %s rejected, previous config kept: %s", self.path, exc
            )
            return self._due
        self._loads += 1
        self._last_error = None
        self._apply(config, f"file:{self.path}")
        return self._due

    def stats(self) -> dict[str, Any]:
        """Return ``{"kind": "file", "path", "loads", "rejected", "last_error"}``."""
        return {
            "kind": "file",
            "path": str(self.path),
            "loads": self._loads,
            "rejected": self._rejected,
            "last_error": self._last_error,
        }

    def close(self) -> None:
        """Nothing to release (the file is read and closed on each load)."""


class ServerSource:
    """``GET {server_url}/v1/config`` with ``If-None-Match``, plus a disk copy.

    Args:
        server_url: the Logos server's base URL.
        api_key: sent as ``Authorization: Bearer``; ``None`` sends no header.
        state_dir: directory for the last good config.
        apply: receives each newly accepted config.
        refresh_seconds: the polling interval (jittered by ±10 %).
        timeout: seconds for connecting and for reading the response.
        max_backoff: cap of the failure backoff (1, 2, 4 … s, also capped by
            ``refresh_seconds``).
        rng: randomness for jitter (tests pass a seeded one).
    """

    def __init__(
        self,
        server_url: str,
        api_key: str | None,
        state_dir: str | os.PathLike[str],
        apply: ApplyFn,
        refresh_seconds: float = 60.0,
        timeout: float = 10.0,
        max_backoff: float = 60.0,
        rng: random.Random | None = None,
    ) -> None:
        self.url = server_url.rstrip("/") + "/v1/config"
        self._api_key = api_key
        self._apply = apply
        self._refresh = refresh_seconds
        self._timeout = timeout
        self._max_backoff = max_backoff
        self._rng = rng or random.Random()
        # One cache file per (server, key) pair: two apps on one host must not
        # serve each other's config.  Only a hash of the key reaches the disk.
        ident = hashlib.sha256(f"{self.url}\0{api_key or ''}".encode()).hexdigest()[:16]
        self.cache_path = Path(state_dir) / f"router-config-{ident}.json"
        self._session = requests.Session()
        self._etag: str | None = None
        self._due = 0.0
        self._failures = 0
        self._counts = {"polls": 0, "updates": 0, "not_modified": 0, "errors": 0, "rejected": 0}
        self._last_error: str | None = None
        self._last_ok: float | None = None
        self._rejected_etag: str | None = None

    # -- disk copy ---------------------------------------------------------

    def load_cached(self) -> bool:
        """Apply the last good config from disk, if there is a valid one.

        Returns:
            True if a cached config was applied.
        """
        try:
            doc = json.loads(self.cache_path.read_bytes())
        except FileNotFoundError:
            return False
        except (OSError, ValueError) as exc:
            logger.warning(
                "logos_shift: ignoring unreadable config cache %s: %s", self.cache_path, exc
            )
            return False
        try:
            if not isinstance(doc, dict) or doc.get("format") != _CACHE_FORMAT:
                raise ConfigError(["cache: unknown format"])
            config = validate_config(doc.get("config"))
        except ConfigError as exc:
            logger.warning(
                "logos_shift: ignoring invalid config cache %s: %s", self.cache_path, exc
            )
            return False
        etag = doc.get("etag")
        self._etag = etag if isinstance(etag, str) else None
        self._apply(config, f"cache:{self.cache_path}")
        return True

    def _persist(self, config: RouterConfig, etag: str | None) -> None:
        doc = {
            "format": _CACHE_FORMAT,
            "url": self.url,
            "etag": etag,
            "saved_at": time.time(),
            "config": config.to_json(),
        }
        directory = self.cache_path.parent
        try:
            directory.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".router-config-", suffix=".tmp", dir=directory)
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(json.dumps(doc, separators=(",", ":")).encode())
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, self.cache_path)
            except BaseException:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
                raise
        except OSError as exc:
            # The in-memory config is still good; only restarts during an outage lose it.
            logger.warning("logos_shift: cannot save config cache %s: %s", self.cache_path, exc)

    # -- polling -----------------------------------------------------------

    def _jitter(self, seconds: float) -> float:
        return seconds * self._rng.uniform(0.9, 1.1)

    def _fail(self, now: float, message: str) -> float:
        self._failures += 1
        self._counts["errors"] += 1
        if self._failures == 1:
            logger.warning(
                "logos_shift: cannot fetch routing config from %s (%s); keeping the current one",
                self.url,
                message,
            )
        self._last_error = message
        cap = min(self._max_backoff, self._refresh)
        self._due = now + self._jitter(min(cap, 2.0 ** (self._failures - 1)))
        return self._due

    def _ok(self, now: float) -> float:
        if self._failures:
            logger.info("logos_shift: routing config server %s reachable again", self.url)
        self._failures = 0
        self._last_error = None
        self._last_ok = time.time()
        self._due = now + self._jitter(self._refresh)
        return self._due

    def poll_once(self, now: float, force: bool = False) -> float:
        """Fetch the config if due (or forced).

        Args:
            now: ``time.monotonic()``.
            force: poll even if not due.

        Returns:
            The monotonic time of the next poll.
        """
        if not force and now < self._due:
            return self._due
        _guard.fault("router.poll")
        self._counts["polls"] += 1
        headers = {"Accept": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        if self._etag:
            headers["If-None-Match"] = self._etag
        try:
            # A short connect timeout: the poll runs on the shared worker thread,
            # and a black-holed server must not hold up everyone's uploads.
            resp = self._session.get(
                self.url, headers=headers, timeout=(min(3.0, self._timeout), self._timeout)
            )
            try:
                status, body, etag = resp.status_code, resp.content, resp.headers.get("ETag")
            finally:
                resp.close()
        except requests.RequestException as exc:
            return self._fail(now, f"{type(exc).__name__}: {exc}")
        if status == 304:
            self._counts["not_modified"] += 1
            return self._ok(now)
        if status != 200:
            return self._fail(now, f"HTTP {status}")
        try:
            config = _parse(body)
        except ConfigError as exc:
            self._counts["rejected"] += 1
            self._last_error = str(exc)
            if etag is None or etag != self._rejected_etag:
                logger.warning(
                    "logos_shift: config from %s rejected, previous kept: %s", self.url, exc
                )
            self._rejected_etag = etag
            # The server answered; hammering it will not fix its config.
            self._failures = 0
            self._due = now + self._jitter(self._refresh)
            return self._due
        self._counts["updates"] += 1
        self._etag = etag
        self._apply(config, f"server:{self.url}")
        self._persist(config, etag)
        return self._ok(now)

    def stats(self) -> dict[str, Any]:
        """Return poll counters, the ETag, the last error and consecutive failures."""
        return {
            "kind": "server",
            "url": self.url,
            "etag": self._etag,
            "consecutive_failures": self._failures,
            "last_error": self._last_error,
            "last_ok_at": self._last_ok,
            "cache_path": str(self.cache_path),
            **self._counts,
        }

    def reset_after_fork(self) -> None:
        """Give a forked child its own HTTP session (sockets must not be shared)."""
        self._session = requests.Session()

    def close(self) -> None:
        """Close the HTTP session."""
        self._session.close()
