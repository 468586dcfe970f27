"""The commands that talk to a running server: its URL, the admin key, errors shown once.

The server is ``--server`` or ``$LOGOS_SHIFT_SERVER_URL`` (default
``http://127.0.0.1:8600``); the key is ``--api-key`` or ``$LOGOS_SHIFT_ADMIN_KEY``
(then ``$LOGOS_SHIFT_API_KEY``).  Only ``requests`` is needed, not the server extra.
"""

from __future__ import annotations

import argparse
import os
from typing import Any
from urllib.parse import quote

import requests

from . import _output

__all__ = ["Client", "ServerError", "add_server_options", "quote"]

DEFAULT_URL = "http://127.0.0.1:8600"


def add_server_options(p: argparse.ArgumentParser) -> None:
    """Add ``--server`` and ``--api-key`` to a command that talks to the server."""
    p.add_argument(
        "--server",
        default=None,
        metavar="URL",
        help=f"the Logos server (default: $LOGOS_SHIFT_SERVER_URL or {DEFAULT_URL})",
    )
    p.add_argument(
        "--api-key",
        default=None,
        metavar="KEY",
        help="an admin key (default: $LOGOS_SHIFT_ADMIN_KEY, then $LOGOS_SHIFT_API_KEY)",
    )


class ServerError(Exception):
    """The server answered with an error status, or could not be reached.

    Attributes:
        status: the HTTP status (0 when unreachable).
        body: the decoded error body.
    """

    def __init__(self, status: int, body: Any, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


class Client:
    """A requests session bound to the server and key the arguments name.

    Args:
        args: parsed arguments with ``server`` and ``api_key``.
    """

    def __init__(self, args: argparse.Namespace) -> None:
        self.url = (args.server or os.environ.get("LOGOS_SHIFT_SERVER_URL") or DEFAULT_URL).rstrip(
            "/"
        )
        key = (
            args.api_key
            or os.environ.get("LOGOS_SHIFT_ADMIN_KEY")
            or os.environ.get("LOGOS_SHIFT_API_KEY")
        )
        self.session = requests.Session()
        if key:
            self.session.headers["Authorization"] = f"Bearer {key}"

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.session.close()

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        params: dict[str, Any] | None = None,
        ok: tuple[int, ...] = (200,),
        wait: str | None = None,
    ) -> Any:
        """Send a request and return the decoded JSON body of a successful answer.

        Args:
            method: HTTP method.
            path: path from the server's root, e.g. ``/v1/datasets``.
            body: a JSON body.
            params: query parameters (``None`` values are left out).
            ok: the statuses that count as success.
            wait: when given, progress is shown while the answer takes longer
                than a second (e.g. ``"the server to build the dataset"``).

        Returns:
            The JSON body.

        Raises:
            ServerError: an error status, or the server is unreachable.
        """
        query = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            if wait is None:
                resp = self.session.request(
                    method, self.url + path, json=body, params=query, timeout=120
                )
            else:
                with _output.progress(wait):
                    resp = self.session.request(
                        method, self.url + path, json=body, params=query, timeout=3600
                    )
        except requests.RequestException as exc:
            raise ServerError(
                0,
                None,
                f"cannot reach the server at {self.url}: {exc} (is `logos-shift server` "
                "running? pass --server URL or set $LOGOS_SHIFT_SERVER_URL)",
            ) from None
        try:
            data = resp.json()
        except ValueError:
            data = {"message": resp.text[:500]}
        if resp.status_code not in ok:
            raise ServerError(resp.status_code, data, describe(resp.status_code, data))
        return data


def describe(status: int, data: Any) -> str:
    """One error text per answer: the message, then the details it does not already say.

    Args:
        status: the HTTP status.
        data: the error body ``{"error", "message", "details"}``.

    Returns:
        The text shown after ``error:``.
    """
    msg = str(data.get("message")) if isinstance(data, dict) else str(data)
    lines = [f"HTTP {status}: {msg}"]
    if isinstance(data, dict):
        for d in data.get("details") or []:
            text = d if isinstance(d, str) else _detail(d)
            if text and text not in msg:
                lines.append(f"  - {text}")
    if status == 401:
        lines.append(
            "  (pass an admin key with --api-key or $LOGOS_SHIFT_ADMIN_KEY; "
            "create one with: logos-shift keys create --project NAME --scope admin)"
        )
    return "\n".join(lines)


def _detail(d: Any) -> str:
    if isinstance(d, dict) and "msg" in d:
        loc = ".".join(str(p) for p in d.get("loc") or [])
        return f"{loc}: {d['msg']}" if loc else str(d["msg"])
    return str(d)


def fail(exc: ServerError) -> int:
    """Print a server error once and return the exit status 1."""
    _output.err(str(exc))
    return 1
