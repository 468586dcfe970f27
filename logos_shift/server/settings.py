"""What the server's operator configures: limits, rate limits, backends, outbound policy.

Everything has a safe default, so ``logos-shift server`` needs no file.  An
operator sets more in a JSON file (``logos-shift server --config server.json``
or ``$LOGOS_SHIFT_SERVER_CONFIG``) and/or environment variables::

    {
      "backends": {
        "openai": {"base_url": "https://api.openai.com/v1", "api_key_env": "OPENAI_API_KEY"}
      },
      "default_backend": "openai",
      "finetune": {"launches_per_day": 10, "allow_project_backends": true},
      "outbound": {"allow_private": false, "allow_networks": ["10.20.0.0/16"]},
      "limits": {"max_record_bytes": 1048576, "header_timeout_s": 10},
      "rate_limits": {"ingest_per_s": 200, "admin_per_s": 20}
    }

Backends can also come from the environment: ``LOGOS_SHIFT_BACKEND_<NAME>_URL`` and
``LOGOS_SHIFT_BACKEND_<NAME>_KEY`` define backend ``<name>`` (lower case), and
``LOGOS_SHIFT_FINETUNE_API_KEY`` (with ``LOGOS_SHIFT_FINETUNE_BASE_URL``, default
OpenAI) defines the backend ``default``.  A backend's key is only ever sent to
that backend's URL.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .outbound import AddressPolicy

__all__ = ["Backend", "Limits", "RateLimits", "ServerSettings", "SettingsError"]

MiB = 1024 * 1024
OPENAI_BASE_URL = "https://api.openai.com/v1"
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
_ENV_BACKEND = re.compile(r"^LOGOS_SHIFT_BACKEND_([A-Z0-9_]+)_(URL|KEY)$")


class SettingsError(ValueError):
    """The server's configuration is invalid (the message names the setting)."""


@dataclass(frozen=True)
class Limits:
    """Request, body and connection limits.

    Attributes:
        max_ingest_bytes: largest ``/v1/ingest`` body as sent (gzip'd or not).
        max_decompressed_bytes: largest ingest body after gunzip.
        max_gzip_members: most gzip members in one body (the client sends one).
        max_batch_records: most records in one ingest batch.
        max_record_bytes: largest record (its JSON text); equal to the client's
            default ``max_record_bytes``, and the client truncates records above
            its own limit before sending, so nothing it sends is refused.
        max_body_bytes: largest body of every other endpoint.
        max_page_bytes: most record bytes in one page of ``/v1/datasets/{name}/calls``
            (a page always holds at least one call) and in one chunk of an export.
        header_timeout_s: a client must send its request line and headers within
            this many seconds of connecting (or of its previous response).
        body_timeout_s: ... and the whole body within this many seconds after the headers.
        keepalive_timeout_s: an idle kept-alive connection is closed after this long.
        max_keepalive_requests: requests served on one connection before it is closed.
        max_connections: open connections at most; over it, the connection that has
            waited longest for its headers is closed (never more than the process's
            file descriptor limit allows, less a reserve).
        max_concurrent_requests: requests handled at once; more get 503 with
            ``Retry-After`` (``/healthz`` is exempt).
    """

    max_ingest_bytes: int = 16 * MiB
    max_decompressed_bytes: int = 64 * MiB
    max_gzip_members: int = 64
    max_batch_records: int = 5000
    max_record_bytes: int = 1 * MiB
    max_body_bytes: int = 1 * MiB
    max_page_bytes: int = 8 * MiB
    header_timeout_s: float = 10.0
    body_timeout_s: float = 60.0
    keepalive_timeout_s: float = 5.0
    max_keepalive_requests: int = 1000
    max_connections: int = 1000
    max_concurrent_requests: int = 64

    def __post_init__(self) -> None:
        _check_numbers(self, "limits", zero=False)


@dataclass(frozen=True)
class RateLimits:
    """Token buckets per API key and the slow-down on bad keys per client address.

    A key's bucket holds ``*_burst`` requests and refills at ``*_per_s``; an empty
    bucket answers 429 with ``Retry-After``.  An address that sent
    ``bad_keys_per_address`` missing or wrong keys within ``bad_key_window_s`` gets
    429 on every authenticated endpoint for ``bad_key_block_s`` (doubling while it
    goes on, up to an hour).  A rate of 0 turns that limit off.  Counters live in
    each server process.

    Attributes:
        ingest_per_s: sustained requests per second of an ingest key.
        ingest_burst: bucket size of an ingest key.
        admin_per_s: sustained requests per second of an admin key.
        admin_burst: bucket size of an admin key.
        bad_keys_per_address: failed authentications tolerated per window.
        bad_key_window_s: the window.
        bad_key_block_s: first block after the window's allowance is used up.
    """

    ingest_per_s: float = 200.0
    ingest_burst: int = 1000
    admin_per_s: float = 20.0
    admin_burst: int = 100
    bad_keys_per_address: int = 20
    bad_key_window_s: float = 60.0
    bad_key_block_s: float = 60.0

    def __post_init__(self) -> None:
        _check_numbers(self, "rate_limits", zero=True)


@dataclass(frozen=True)
class Backend:
    """A fine-tuning backend the operator configured (OpenAI-compatible API).

    Attributes:
        name: what projects ask for (``"backend": "openai"``).
        base_url: the API root, e.g. ``https://api.openai.com/v1``.
        api_key: the operator's key for it; sent to ``base_url`` only, never shown.
    """

    name: str
    base_url: str
    api_key: str = field(repr=False)

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise SettingsError(
                f"backend name {self.name!r} must be 1-64 lower-case letters, digits, _ . -"
            )
        if not re.match(r"^https?://[^\s?#]+$", self.base_url):
            raise SettingsError(
                f"backends.{self.name}.base_url must be an http(s) URL without query or fragment"
            )


@dataclass(frozen=True)
class ServerSettings:
    """Everything the operator configures (see the module docstring for the file format).

    Attributes:
        backends: the configured fine-tuning backends by name.
        default_backend: the backend used when a fine-tune names none (default: the
            only one configured, or the one named ``default``).
        allow_project_backends: whether a project may send its own ``backend_url``
            (always with its own ``backend_api_key``, always under ``outbound``).
        launches_per_day: fine-tune launches per project in any 24 hours.
        outbound: which addresses project-chosen URLs (webhooks, project backends) may reach.
        webhook_timeout_s: seconds per webhook attempt.
        limits: request and connection limits.
        rate_limits: per-key and per-address rate limits.
    """

    backends: Mapping[str, Backend] = field(default_factory=dict)
    default_backend: str | None = None
    allow_project_backends: bool = True
    launches_per_day: int = 10
    outbound: AddressPolicy = field(default_factory=AddressPolicy)
    webhook_timeout_s: float = 5.0
    limits: Limits = field(default_factory=Limits)
    rate_limits: RateLimits = field(default_factory=RateLimits)

    def __post_init__(self) -> None:
        for key, backend in self.backends.items():
            if key != backend.name:
                raise SettingsError(f"backend {backend.name!r} is registered as {key!r}")
        if self.default_backend is not None and self.default_backend not in self.backends:
            raise SettingsError(f"default_backend {self.default_backend!r} is not configured")
        if isinstance(self.launches_per_day, bool) or self.launches_per_day < 0:
            raise SettingsError("finetune.launches_per_day must be an integer >= 0")
        if not math.isfinite(self.webhook_timeout_s) or self.webhook_timeout_s <= 0:
            raise SettingsError("webhook_timeout_s must be a positive number")

    def backend_for(self, name: str | None) -> Backend | None:
        """Return the configured backend ``name`` (None: the default one).

        Args:
            name: a backend name, or None for the default.

        Returns:
            The backend, or None when there is no such (or no default) backend.
        """
        if name is not None:
            return self.backends.get(name)
        if self.default_backend is not None:
            return self.backends[self.default_backend]
        if len(self.backends) == 1:
            return next(iter(self.backends.values()))
        return self.backends.get("default")

    @classmethod
    def from_json(
        cls, data: Mapping[str, Any], environ: Mapping[str, str] | None = None
    ) -> ServerSettings:
        """Build settings from the JSON form (unknown keys are errors).

        Args:
            data: the decoded config file.
            environ: where ``api_key_env`` names are looked up (default: ``os.environ``).

        Returns:
            The settings.

        Raises:
            SettingsError: an unknown key or an invalid value.
        """
        env = os.environ if environ is None else environ
        data = dict(data)
        _only(data, {"backends", "default_backend", "finetune", "outbound", "limits",
                     "rate_limits", "webhooks"}, "")  # fmt: skip
        backends: dict[str, Backend] = {}
        raw_backends = data.get("backends") or {}
        if not isinstance(raw_backends, dict):
            raise SettingsError("backends must be an object of name -> backend")
        for name, spec in raw_backends.items():
            if not isinstance(spec, dict):
                raise SettingsError(f"backends.{name} must be an object")
            _only(spec, {"base_url", "api_key", "api_key_env"}, f"backends.{name}.")
            key = spec.get("api_key")
            if key is None and spec.get("api_key_env"):
                key = env.get(str(spec["api_key_env"]))
                if not key:
                    raise SettingsError(
                        f"backends.{name}.api_key_env: ${spec['api_key_env']} is not set"
                    )
            if not isinstance(key, str) or not key:
                raise SettingsError(f"backends.{name} needs api_key or api_key_env")
            backends[str(name)] = Backend(str(name), str(spec.get("base_url") or ""), key)
        finetune = _section(data, "finetune", {"launches_per_day", "allow_project_backends"})
        outbound = _section(data, "outbound", {"allow_private", "allow_networks"})
        webhooks = _section(data, "webhooks", {"timeout_s"})
        if "allow_networks" in outbound:
            nets = outbound["allow_networks"]
            if not isinstance(nets, list) or not all(isinstance(n, str) for n in nets):
                raise SettingsError("outbound.allow_networks must be a list of CIDR strings")
            outbound["allow_networks"] = tuple(nets)
        try:
            return cls(
                backends=backends,
                default_backend=data.get("default_backend"),
                allow_project_backends=bool(finetune.get("allow_project_backends", True)),
                launches_per_day=int(finetune.get("launches_per_day", 10)),
                outbound=AddressPolicy(**outbound),
                webhook_timeout_s=float(webhooks.get("timeout_s", 5.0)),
                limits=Limits(**_section(data, "limits", _names(Limits))),
                rate_limits=RateLimits(**_section(data, "rate_limits", _names(RateLimits))),
            )
        except (TypeError, ValueError) as exc:
            if isinstance(exc, SettingsError):
                raise
            raise SettingsError(str(exc)) from None

    @classmethod
    def load(
        cls, path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None
    ) -> ServerSettings:
        """Read the config file (``path`` or ``$LOGOS_SHIFT_SERVER_CONFIG``) and the environment.

        Backends from the environment are added to the file's (the file wins on a
        name defined in both).

        Args:
            path: a JSON config file; None: ``$LOGOS_SHIFT_SERVER_CONFIG`` if set.
            environ: the environment (default: ``os.environ``).

        Returns:
            The settings.

        Raises:
            SettingsError: the file cannot be read or is invalid.
        """
        env = os.environ if environ is None else environ
        path = path or env.get("LOGOS_SHIFT_SERVER_CONFIG") or None
        data: dict[str, Any] = {}
        if path is not None:
            try:
                data = json.loads(Path(path).read_text(encoding="utf-8"))
            except OSError as exc:
                raise SettingsError(f"cannot read the server config {path}: {exc}") from None
            except ValueError as exc:
                raise SettingsError(f"the server config {path} is not JSON: {exc}") from None
            if not isinstance(data, dict):
                raise SettingsError(f"the server config {path} must be a JSON object")
        settings = cls.from_json(data, env)
        extra = _env_backends(env)
        if extra:
            merged = {**extra, **settings.backends}
            settings = dataclasses.replace(settings, backends=merged)
        return settings


def _env_backends(env: Mapping[str, str]) -> dict[str, Backend]:
    found: dict[str, dict[str, str]] = {}
    for var, value in env.items():
        m = _ENV_BACKEND.match(var)
        if m and value:
            found.setdefault(m.group(1).lower(), {})[m.group(2)] = value
    out: dict[str, Backend] = {}
    for name, parts in sorted(found.items()):
        if "URL" not in parts or "KEY" not in parts:
            missing = "URL" if "URL" not in parts else "KEY"
            raise SettingsError(f"LOGOS_SHIFT_BACKEND_{name.upper()}_{missing} is not set")
        out[name] = Backend(name, parts["URL"], parts["KEY"])
    legacy = env.get("LOGOS_SHIFT_FINETUNE_API_KEY")
    if legacy and "default" not in out:
        url = env.get("LOGOS_SHIFT_FINETUNE_BASE_URL") or OPENAI_BASE_URL
        out["default"] = Backend("default", url, legacy)
    return out


def _names(cls: type) -> set[str]:
    return {f.name for f in fields(cls)}


def _only(data: Mapping[str, Any], known: set[str], prefix: str) -> None:
    unknown = sorted(set(data) - known)
    if unknown:
        raise SettingsError(f"unknown setting(s) {[prefix + k for k in unknown]}")


def _section(data: Mapping[str, Any], name: str, known: set[str]) -> dict[str, Any]:
    value = data.get(name) or {}
    if not isinstance(value, dict):
        raise SettingsError(f"{name} must be an object")
    _only(value, known, f"{name}.")
    return dict(value)


def _check_numbers(obj: Any, section: str, zero: bool) -> None:
    """Every field of ``obj`` a finite number (an integer where typed so), > 0 or >= 0."""
    for f in fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SettingsError(f"{section}.{f.name} must be a number")
        if not math.isfinite(value) or value < 0 or (value == 0 and not zero):
            bound = ">= 0" if zero else "> 0"
            raise SettingsError(f"{section}.{f.name} must be a finite number {bound}")
        if f.type in ("int", int) and not isinstance(value, int):
            raise SettingsError(f"{section}.{f.name} must be an integer")
