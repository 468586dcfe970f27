"""Which variant failures fall back to control (real SDK, requests and builtin exceptions)."""

from __future__ import annotations

import asyncio

import anthropic
import httpx2
import openai
import pytest
import requests

from logos_shift.routing.fallback import is_fallback_error, status_of

REQ = httpx2.Request("POST", "http://127.0.0.1:9/v1/chat/completions")


def openai_status(code: int) -> openai.APIStatusError:
    return openai.APIStatusError("x", response=httpx2.Response(code, request=REQ), body=None)


def anthropic_status(code: int) -> anthropic.APIStatusError:
    return anthropic.APIStatusError("x", response=httpx2.Response(code, request=REQ), body=None)


@pytest.mark.parametrize("code", [404, 408, 429, 500, 502, 503, 529])
def test_retryable_statuses_fall_back(code: int) -> None:
    """5xx, 404, 408 and 429 from either SDK fall back to control."""
    assert is_fallback_error(openai_status(code))
    assert is_fallback_error(anthropic_status(code))


@pytest.mark.parametrize("code", [400, 401, 403, 409, 422])
def test_request_errors_do_not_fall_back(code: int) -> None:
    """A bad request (other 4xx) would fail on control too, so it is not retried."""
    assert not is_fallback_error(openai_status(code))
    assert not is_fallback_error(anthropic_status(code))


@pytest.mark.parametrize("code", [401, 403])
def test_auth_errors_fall_back_for_a_variant_on_another_endpoint(code: int) -> None:
    """401/403 fall back when the variant is served by its own base_url and key."""
    assert is_fallback_error(openai_status(code), other_endpoint=True)


@pytest.mark.parametrize(
    "exc",
    [
        openai.APIConnectionError(request=REQ),
        openai.APITimeoutError(request=REQ),
        anthropic.APIConnectionError(request=REQ),
        anthropic.APITimeoutError(request=REQ),
        ConnectionRefusedError(),
        TimeoutError(),
        requests.ConnectionError(),
        requests.Timeout(),
    ],
)
def test_connection_errors_and_timeouts_fall_back(exc: Exception) -> None:
    """Connection failures and timeouts of every flavour fall back."""
    assert is_fallback_error(exc)


def test_other_exceptions_do_not_fall_back() -> None:
    """Programming errors and cancellation are never retried on control."""
    assert not is_fallback_error(ValueError("bad"))
    assert not is_fallback_error(KeyError("k"))
    assert not is_fallback_error(asyncio.CancelledError())
    assert not is_fallback_error(KeyboardInterrupt())


def test_status_of_reads_response_status() -> None:
    """status_of finds a status on the exception or on its response."""
    resp = requests.Response()
    resp.status_code = 503
    assert status_of(requests.HTTPError(response=resp)) == 503
    assert is_fallback_error(requests.HTTPError(response=resp))
    assert status_of(openai_status(418)) == 418
    assert status_of(ValueError()) is None
