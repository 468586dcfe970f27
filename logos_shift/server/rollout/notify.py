"""Notifications: every rollout event POSTed to the rollout's webhook, signed, with retries.

Each delivery has a delivery id (kept across retries) and is signed afresh per
attempt (see :mod:`logos_shift.webhooks`).  The request goes through the outbound
client (address policy at every connection, pinned, no redirects); the answer's
status is all that is read, and logs show the URL without credentials or query.
"""

from __future__ import annotations

import collections
import json
import logging
import threading
import uuid
from dataclasses import dataclass
from typing import Any

from logos_shift import webhooks
from logos_shift.server.outbound import AddressPolicy, http_client, redact_url

__all__ = ["Signing", "post_webhook"]

logger = logging.getLogger("logos_shift.server.rollout")


@dataclass(frozen=True)
class Signing:
    """How deliveries are sent.

    Attributes:
        secret: the webhook's secret (None for a rollout started before webhooks were
            signed: its deliveries carry no signature).
        policy: the address policy the webhook URL must pass at every connection.
        timeout_s: seconds per attempt.
    """

    secret: str | None
    policy: AddressPolicy
    timeout_s: float = 5.0


def post_webhook(
    url: str,
    event: dict[str, Any],
    retries: int,
    backoff_s: float,
    stop: threading.Event,
    log: collections.deque[dict[str, Any]],
    signing: Signing | None = None,
) -> None:
    """POST an event to a webhook, retrying with doubling delays.

    Args:
        url: the webhook URL.
        event: the JSON event.
        retries: attempts after the first.
        backoff_s: first delay between attempts.
        stop: set to give up early (shutdown).
        log: gets one ``{"url", "event", "ok", "attempts", "delivery"}`` entry per event.
        signing: secret, address policy and timeout (default: no secret, public
            addresses only, 5 s).
    """
    signing = signing or Signing(None, AddressPolicy())
    body = json.dumps(event, separators=(",", ":"), default=str).encode("utf-8")
    delivery = uuid.uuid4().hex
    shown = redact_url(url)
    base = {
        "Content-Type": "application/json",
        "User-Agent": "logos-shift-webhooks",
        "X-Logos-Delivery": delivery,
        "X-Logos-Event": str(event.get("action", "")),
    }
    delay = backoff_s
    with http_client(signing.policy, timeout_s=signing.timeout_s, max_response_bytes=65536) as http:
        for attempt in range(1 + retries):
            headers = dict(base)
            if signing.secret:
                headers[webhooks.SIGNATURE_HEADER] = webhooks.sign(signing.secret, body)
            try:
                # The answer's body is never read: only its status counts.
                with http.stream("POST", url, content=body, headers=headers) as resp:
                    status = resp.status_code
                if 200 <= status < 300:
                    log.append({"url": shown, "event": event["id"], "ok": True,
                                "attempts": attempt + 1, "delivery": delivery})  # fmt: skip
                    return
                why = f"HTTP {status}" + (" (redirects are not followed)" if status < 400 else "")
            except Exception as exc:  # noqa: BLE001 - any failure is retried, never reflected
                why = "refused by the outbound policy" if getattr(exc, "logos_refused", False) \
                    else f"{type(exc).__name__}"  # fmt: skip
            logger.warning(
                "webhook %s attempt %d failed: %s", shown, attempt + 1, why,
                extra={"delivery": delivery},
            )  # fmt: skip
            if attempt < retries and stop.wait(delay):
                break
            delay *= 2
    log.append({"url": shown, "event": event["id"], "ok": False, "attempts": 1 + retries,
                "delivery": delivery})  # fmt: skip
