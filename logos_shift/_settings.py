"""Settings: argument, then ``LOGOS_SHIFT_*`` environment variable, then default.

Every setting is validated when a :class:`~logos_shift.LogosShift` is built, so
a typo fails at start-up with a clear ``ValueError`` instead of losing records
later.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TypedDict
from urllib.parse import urlsplit

MiB = 1024 * 1024

_UNSET: Any = object()


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/logos_shift`` (``~/.cache/logos_shift``), or a temp dir."""
    base = os.environ.get("XDG_CACHE_HOME")
    if base:
        return Path(base) / "logos_shift"
    home = Path.home()
    if str(home) in ("", "/") or not os.access(home, os.W_OK):
        return Path(tempfile.gettempdir()) / "logos_shift"
    return home / ".cache" / "logos_shift"


@dataclass(frozen=True)
class Settings:
    """All knobs of a LogosShift instance (see the README's configuration table)."""

    api_key: str | None = None
    server_url: str | None = None
    filename: str | None = None
    routes: str | None = None
    dataset: str = "default"
    enabled: bool = True
    capture_content: bool = True
    add_id_to_result: bool = True
    max_queue_items: int = 10_000
    max_queue_bytes: int = 64 * MiB
    batch_size: int = 500
    batch_bytes: int = 4 * MiB
    flush_interval: float = 2.0
    max_record_bytes: int = 1 * MiB
    file_max_bytes: int = 100 * MiB
    file_backups: int = 5
    file_fsync: bool = False
    spool_dir: str | None = None
    spool_max_bytes: int = 1024 * MiB
    spool_max_files: int = 10_000
    spool_max_age: float = 7 * 24 * 3600.0
    http_timeout: float = 15.0
    max_backoff: float = 60.0
    shutdown_timeout: float = 5.0
    refresh_seconds: float = 60.0
    state_dir: str | None = None
    inject_stream_usage: bool = False


class SettingsKwargs(TypedDict, total=False):
    """The keyword settings of ``LogosShift(...)`` and ``init(...)``, for type checkers.

    Every field of :class:`Settings` except the four that are also positional
    (``api_key``, ``server_url``, ``filename``, ``routes``).  Used as
    ``**settings: Unpack[SettingsKwargs]``, so IDEs complete the names and mypy
    checks their types; a test keeps it in step with :class:`Settings`.
    """

    dataset: str
    enabled: bool
    capture_content: bool
    add_id_to_result: bool
    max_queue_items: int
    max_queue_bytes: int
    batch_size: int
    batch_bytes: int
    flush_interval: float
    max_record_bytes: int
    file_max_bytes: int
    file_backups: int
    file_fsync: bool
    spool_dir: str | None
    spool_max_bytes: int
    spool_max_files: int
    spool_max_age: float
    http_timeout: float
    max_backoff: float
    shutdown_timeout: float
    refresh_seconds: float
    state_dir: str | None
    inject_stream_usage: bool


_INT = {f.name for f in fields(Settings) if f.type in ("int", int)}
_FLOAT = {f.name for f in fields(Settings) if f.type in ("float", float)}
_BOOL = {f.name for f in fields(Settings) if f.type in ("bool", bool)}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_name(name: str) -> str:
    """The environment variable for setting ``name``."""
    return "LOGOS_SHIFT_" + name.upper()


def resolve(args: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> Settings:
    """Build validated settings from explicit arguments, env vars and defaults.

    Raises:
        ValueError: a setting is out of range, a URL is malformed, or a path
            cannot be written.
        TypeError: an unknown setting name was given.
    """
    env = os.environ if environ is None else environ
    known = {f.name for f in fields(Settings)}
    unknown = set(args) - known
    if unknown:
        raise TypeError(f"unknown LogosShift setting(s): {', '.join(sorted(unknown))}")
    values: dict[str, Any] = {}
    for name in known:
        value = args.get(name, _UNSET)
        if value is _UNSET or value is None:
            raw = env.get(env_name(name))
            if raw is None:
                continue
            value = _parse_env(name, raw)
        values[name] = value
    settings = Settings(**values)
    _validate(settings)
    return settings


def _parse_env(name: str, raw: str) -> Any:
    try:
        if name in _INT:
            return int(raw)
        if name in _FLOAT:
            return float(raw)
    except ValueError:
        raise ValueError(f"{env_name(name)}={raw!r}: not a number") from None
    if name in _BOOL:
        low = raw.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise ValueError(f"{env_name(name)}={raw!r}: expected true or false")
    return raw or None


def _validate(s: Settings) -> None:
    for name in _INT:
        value = getattr(s, name)
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"{name} must be an integer, got {value!r}")
    for name in _FLOAT:
        value = getattr(s, name)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise ValueError(f"{name} must be a number, got {value!r}")
    for name in _BOOL:
        if not isinstance(getattr(s, name), bool):
            raise ValueError(f"{name} must be true or false, got {getattr(s, name)!r}")
    positive = (
        "max_queue_items", "max_queue_bytes", "batch_size", "batch_bytes", "max_record_bytes",
        "file_max_bytes", "spool_max_bytes", "spool_max_files",
    )  # fmt: skip
    for name in positive:
        if getattr(s, name) <= 0:
            raise ValueError(f"{name} must be > 0, got {getattr(s, name)}")
    for name in ("flush_interval", "spool_max_age", "http_timeout", "max_backoff",
                 "shutdown_timeout", "refresh_seconds"):  # fmt: skip
        if getattr(s, name) <= 0:
            raise ValueError(f"{name} must be > 0 seconds, got {getattr(s, name)}")
    if s.file_backups < 0:
        raise ValueError(f"file_backups must be >= 0, got {s.file_backups}")
    if s.max_record_bytes < 1024:
        raise ValueError(f"max_record_bytes must be >= 1024, got {s.max_record_bytes}")
    for name in ("api_key", "server_url", "filename", "routes", "spool_dir", "state_dir"):
        value = getattr(s, name)
        if value is not None and not isinstance(value, (str, os.PathLike)):
            raise ValueError(f"{name} must be a string, got {type(value).__name__}")
    dataset: object = s.dataset
    if not isinstance(dataset, str) or not dataset:
        raise ValueError("dataset must be a non-empty string")
    if s.server_url is not None:
        _check_url(s.server_url)
    if s.filename is not None:
        check_writable_file(str(s.filename))
    if s.routes is not None and not Path(s.routes).parent.exists():
        raise ValueError(f"routes: directory of {s.routes!r} does not exist")


def _check_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ValueError(f"server_url {url!r} is not an http(s) URL like http://localhost:8600")
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ValueError(f"server_url {url!r} has an invalid port") from None


def check_writable_file(path: str) -> None:
    """Raise ValueError unless ``path`` can be created or appended to."""
    p = Path(path)
    if p.is_dir():
        raise ValueError(f"filename {path!r} is a directory")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise ValueError(f"filename {path!r}: directory {str(parent)!r} does not exist")
    if p.exists():
        if not os.access(p, os.W_OK):
            raise ValueError(f"filename {path!r} is not writable")
    elif not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"filename {path!r}: directory {str(parent)!r} is not writable")


RedactFn = Callable[[dict[str, Any]], "dict[str, Any] | None"]
