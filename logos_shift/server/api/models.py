"""Pydantic models of the API's request and response bodies (records are in ``store.records``)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import Path
from pydantic import AfterValidator, BaseModel, Field

from logos_shift.server.store.records import Closed, Comment, Name, Number, Timestamp, finite

RouteName = Annotated[
    str,
    Path(
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:@+-]*$",
        description="Route name (the router's rule: letters, digits and _.:@+-).",
    ),
]


class FeedbackIn(Closed):
    """Body of ``POST /v1/feedback``: feedback given directly to the server."""

    target: Name = Field(description="A logos-shift call id or the provider's response id.")
    outcome: Literal["success", "failure", "neutral"]
    score: Number | None = None
    comment: Comment | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    id: Name | None = Field(
        default=None, description="Idempotency key; a UUIDv7 is generated when absent."
    )
    ts: Timestamp | None = Field(default=None, description="Defaults to the time received.")


class FeedbackOut(BaseModel):
    """Result of ``POST /v1/feedback``."""

    id: str
    status: Literal["ok", "duplicate"]
    call_id: str | None = Field(description="The joined call, or null while it has not arrived.")
    pending: bool = Field(
        default=False,
        description="True (answered 202) when no call with this id or response id has "
        "arrived yet: the feedback is kept and joined when it does, however late.",
    )
    message: str | None = Field(default=None, description="Why the feedback is pending.")


class PriceIn(Closed):
    """Body of ``PUT /v1/prices/{model}``: USD per million tokens."""

    input_per_mtok: Annotated[float, Field(ge=0, le=1_000_000), AfterValidator(finite)]
    output_per_mtok: Annotated[float, Field(ge=0, le=1_000_000), AfterValidator(finite)]


class ErrorOut(BaseModel):
    """The body of every error response."""

    error: str = Field(description="Machine-readable code, e.g. `unauthorized`, `too_large`.")
    message: str = Field(description="What went wrong and how to fix it.")
    details: list[Any] | None = Field(default=None, description="Individual problems.")


class HealthOut(BaseModel):
    """The body of ``GET /healthz``."""

    status: Literal["ok", "unavailable"]


_RETRY_AFTER = {
    "Retry-After": {"description": "Seconds to wait before retrying", "schema": {"type": "integer"}}
}


def error_doc(text: str, retry_after: bool = False) -> dict[str, Any]:
    """The OpenAPI response entry of an error status.

    Args:
        text: what the status means here.
        retry_after: the answer carries ``Retry-After``.

    Returns:
        The entry (``model``, ``description``, maybe ``headers``).
    """
    doc: dict[str, Any] = {"model": ErrorOut, "description": text}
    if retry_after:
        doc["headers"] = _RETRY_AFTER
    return doc


#: Errors every authenticated endpoint can answer (documented on each operation).
SHARED_ERRORS: dict[int | str, dict[str, Any]] = {
    400: error_doc("Malformed request (bad JSON or gzip, bad parameter or cursor)"),
    401: error_doc("Missing, unknown or revoked API key"),
    403: error_doc("The key's scope does not allow this endpoint"),
    404: error_doc("No such route, price or path in this project"),
    413: error_doc("Body, batch or gzip members over the limit"),
    415: error_doc("Unsupported Content-Encoding"),
    422: error_doc("Invalid body or parameter (NaN and Infinity are not JSON)"),
    429: error_doc("This key's rate limit, or this address's bad-key slow-down", True),
    503: error_doc("Too many requests in flight; retry after the delay", True),
}


class RecordResult(BaseModel):
    """The outcome of one record of an ingest batch."""

    id: str | None
    status: Literal["ok", "duplicate", "error"]
    error: str | None = None


class IngestOut(BaseModel):
    """Result of ``POST /v1/ingest``: one result per record, in order."""

    results: list[RecordResult]
    accepted: int
    duplicates: int
    errors: int
