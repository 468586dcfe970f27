"""Which failures of a variant call are retried once on the control model.

A connection error, a timeout, a 5xx, a 404 (model not found) or a
429.  A variant served by another endpoint (``base_url``) also falls back on
401/403, because a missing or wrong key for that endpoint says nothing about
the user's own request.  Other 4xx (a bad request) would fail on control too,
so they are raised as they are.

Exceptions are classified by duck typing (a ``status_code``, a ``code``, or a
``response.status_code``) and by class name along the MRO, so this module
needs neither SDK installed and also covers ``httpx``, ``requests`` and the
standard library.
"""

from __future__ import annotations

from typing import Any

#: Class names (anywhere in the MRO) of connection and timeout failures.
_TRANSPORT_NAMES = frozenset(
    {
        "APIConnectionError",  # openai and anthropic (APITimeoutError subclasses it)
        "APITimeoutError",
        "TransportError",  # httpx: ConnectError, ReadTimeout, RemoteProtocolError …
        "TimeoutException",  # httpx
        "ConnectionError",  # builtin, and requests.ConnectionError
        "Timeout",  # requests
        "TimeoutError",  # builtin (socket.timeout)
    }
)
_RETRY_STATUSES = frozenset({404, 408, 429})
_ENDPOINT_STATUSES = frozenset({401, 403})


def status_of(exc: BaseException) -> int | None:
    """Return the HTTP status an exception carries, if any.

    Args:
        exc: any exception.

    Returns:
        ``exc.status_code``, an HTTP-status ``exc.code`` (google-genai, urllib)
        or ``exc.response.status_code``, when it is an int.
    """
    status: Any = getattr(exc, "status_code", None)
    if not isinstance(status, int):
        code = getattr(exc, "code", None)  # google-genai's APIError, urllib's HTTPError
        if isinstance(code, int) and 100 <= code <= 599:
            return code
        response = getattr(exc, "response", None)
        status = getattr(response, "status_code", None)
    return status if isinstance(status, int) and not isinstance(status, bool) else None


def is_fallback_error(exc: BaseException, other_endpoint: bool = False) -> bool:
    """Decide whether a failed variant call should be retried on control.

    Args:
        exc: what the variant call raised.
        other_endpoint: the variant is served by its own ``base_url``
            (then 401/403 fall back too).

    Returns:
        True for connection errors, timeouts, 5xx, 404, 408 and 429.

    Example:
        >>> is_fallback_error(TimeoutError()), is_fallback_error(ValueError())
        (True, False)
    """
    if not isinstance(exc, Exception):
        return False  # KeyboardInterrupt, SystemExit, CancelledError: never retried
    status = status_of(exc)
    if status is not None:
        if status >= 500 or status in _RETRY_STATUSES:
            return True
        return other_endpoint and status in _ENDPOINT_STATUSES
    return any(cls.__name__ in _TRANSPORT_NAMES for cls in type(exc).__mro__)
