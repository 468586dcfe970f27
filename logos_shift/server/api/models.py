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
