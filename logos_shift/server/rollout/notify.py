"""Notifications: every rollout event POSTed to the rollout's webhook, with retries."""

from __future__ import annotations

import collections
import logging
import threading
from typing import Any

import requests

__all__ = ["post_webhook"]

logger = logging.getLogger("logos_shift.server.rollout")


def post_webhook(
    url: str,
    event: dict[str, Any],
    retries: int,
    backoff_s: float,
    stop: threading.Event,
    log: collections.deque[dict[str, Any]],
) -> None:
    """POST an event to a webhook, retrying with doubling delays.

    Args:
        url: the webhook URL.
        event: the JSON event.
        retries: attempts after the first.
        backoff_s: first delay between attempts.
        stop: set to give up early (shutdown).
        log: gets one ``{"url", "event", "ok", "attempts"}`` entry per event.
    """
    delay = backoff_s
    for attempt in range(1 + retries):
        try:
            resp = requests.post(url, json=event, timeout=5.0)
            resp.close()
            if resp.status_code < 300:
                log.append({"url": url, "event": event["id"], "ok": True, "attempts": attempt + 1})
                return
            why = f"HTTP {resp.status_code}"
        except requests.RequestException as exc:
            why = str(exc)
        logger.warning("webhook %s attempt %d failed: %s", url, attempt + 1, why)
        if attempt < retries and stop.wait(delay):
            break
        delay *= 2
    log.append({"url": url, "event": event["id"], "ok": False, "attempts": 1 + retries})
