"""The dashboard's session cookie and CSRF tokens (HMAC-signed, no server-side state).

The cookie holds ``key_id.expiry.mac`` — never the key.  The MAC is keyed by the
stored hash of the admin key that signed in, so any worker can verify it, and
revoking that key ends its sessions.  A CSRF token is a second MAC over the
cookie value: a form posted from another site cannot know it.
"""

from __future__ import annotations

import hashlib
import hmac
import time

from logos_shift.server.store.db import Database
from logos_shift.server.store.keys import Principal, session_secret

COOKIE = "logos_session"
#: How long a session lasts (12 hours).
LIFETIME_S = 12 * 3600


def _mac(secret: str, purpose: str, text: str) -> str:
    return hmac.new(secret.encode(), f"{purpose}|{text}".encode(), hashlib.sha256).hexdigest()


def make_cookie(secret: str, key_id: int, now: float | None = None) -> str:
    """Return a session cookie value for ``key_id``.

    Args:
        secret: the key's stored hash.
        key_id: the admin key's id.
        now: the current Unix time (default: the clock).

    Returns:
        ``key_id.expiry.mac``.
    """
    expiry = int((time.time() if now is None else now) + LIFETIME_S)
    body = f"{key_id}.{expiry}"
    return f"{body}.{_mac(secret, 'session', body)}"


def check_cookie(db: Database, value: str | None) -> tuple[Principal, str] | None:
    """Return the principal and secret of a valid, unexpired admin session.

    Args:
        db: the database.
        value: the cookie as sent (or None).

    Returns:
        ``(principal, secret)``, or None for a missing, forged, expired or revoked one.
    """
    if not value or len(value) > 200:
        return None
    parts = value.split(".")
    if len(parts) != 3 or not parts[0].isdigit() or not parts[1].isdigit():
        return None
    if int(parts[1]) < time.time():
        return None
    found = session_secret(db, int(parts[0]))
    if found is None:
        return None
    principal, secret = found
    good = _mac(secret, "session", f"{parts[0]}.{parts[1]}")
    if not hmac.compare_digest(good, parts[2]) or principal.scope != "admin":
        return None
    return principal, secret


def secret_of(db: Database, key_id: int) -> str | None:
    """Return the session secret of a live key (its stored hash), or None.

    Args:
        db: the database.
        key_id: the key's id.

    Returns:
        The secret, or None when the key is unknown or revoked.
    """
    found = session_secret(db, key_id)
    return None if found is None else found[1]


def csrf_token(secret: str, cookie: str) -> str:
    """Return the CSRF token of a session (put in every form).

    Args:
        secret: the session's secret.
        cookie: the session cookie value.

    Returns:
        The token.
    """
    return _mac(secret, "csrf", cookie)


def csrf_ok(secret: str, cookie: str, token: str | None) -> bool:
    """Return whether a posted CSRF token belongs to this session.

    Args:
        secret: the session's secret.
        cookie: the session cookie value.
        token: the token posted.

    Returns:
        True when it matches.
    """
    return token is not None and hmac.compare_digest(csrf_token(secret, cookie), token)
