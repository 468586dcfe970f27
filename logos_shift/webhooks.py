"""Signing and verifying the server's webhooks (stdlib only; receivers need nothing else).

Every delivery carries three headers:

* ``X-Logos-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>`` over ``"<t>." + body``
  with the webhook's secret (``whsec_…``, shown once when the fine-tune started);
* ``X-Logos-Delivery``: an id that stays the same when a failed delivery is retried
  (use it to de-duplicate);
* ``X-Logos-Event``: the event's action (``training_started``, ``promote``, …).

A receiver checks the signature over the exact bytes it received and refuses old
timestamps (replays)::

    from logos_shift.webhooks import InvalidSignature, verify_signature

    try:
        verify_signature(secret, body, headers["X-Logos-Signature"])
    except InvalidSignature:
        ...  # answer 400 and ignore it
"""

from __future__ import annotations

import hashlib
import hmac
import time

__all__ = ["SIGNATURE_HEADER", "InvalidSignature", "sign", "verify_signature"]

#: The header holding the timestamp and the signature.
SIGNATURE_HEADER = "X-Logos-Signature"


class InvalidSignature(ValueError):
    """The signature header is missing, malformed, stale or does not match the body."""


def _digest(secret: str, timestamp: int, body: bytes) -> str:
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """Return the ``X-Logos-Signature`` value for ``body``.

    Args:
        secret: the webhook's secret.
        body: the exact bytes sent.
        timestamp: Unix seconds (default: now).

    Returns:
        ``"t=<timestamp>,v1=<hex digest>"``.

    Example:
        >>> sign("whsec_x", b"{}", timestamp=1700000000)[:13]
        't=1700000000,'
    """
    t = int(time.time()) if timestamp is None else int(timestamp)
    return f"t={t},v1={_digest(secret, t, body)}"


def verify_signature(
    secret: str,
    body: bytes,
    header: str | None,
    tolerance_s: float = 300.0,
    now: float | None = None,
) -> None:
    """Check a delivery's signature; raise unless it is valid and recent.

    Args:
        secret: the webhook's secret.
        body: the raw request body, exactly as received (before any JSON parsing).
        header: the ``X-Logos-Signature`` value.
        tolerance_s: how far the timestamp may be from ``now`` (replay window).
        now: Unix seconds (default: the clock).

    Raises:
        InvalidSignature: missing, malformed, outside the window, or not matching.

    Example:
        >>> verify_signature("whsec_x", b"{}", sign("whsec_x", b"{}"))
    """
    if not header:
        raise InvalidSignature(f"no {SIGNATURE_HEADER} header")
    fields: dict[str, list[str]] = {}
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if sep:
            fields.setdefault(key, []).append(value)
    try:
        timestamp = int(fields["t"][0])
    except (KeyError, ValueError):
        raise InvalidSignature("the signature has no valid timestamp") from None
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_s:
        raise InvalidSignature("the signature's timestamp is outside the tolerance (a replay?)")
    expected = _digest(secret, timestamp, body)
    if not any(hmac.compare_digest(expected, v) for v in fields.get("v1", [])):
        raise InvalidSignature("the signature does not match the body")
