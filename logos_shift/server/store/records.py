"""Pydantic models of the wire records (DESIGN.md "Records"), as ingest validates them.

Top-level record fields are closed (``extra="forbid"``): an unknown field is
an error, not silently dropped.  Provider-shaped sub-objects (``usage``,
``sdk``, ``stream``, ``error``) type-check the fields the schema names and
keep any extra ones, because SDKs grow such fields between releases.
Strings that land in indexed columns refuse NUL and lone surrogates, which
PostgreSQL cannot store.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, StrictInt


def _clean(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid UTF-8 text") from None
    return value


def finite(value: float) -> float:
    """Refuse NaN and infinities (a pydantic ``AfterValidator``).

    Args:
        value: the number.

    Returns:
        The number unchanged.

    Raises:
        ValueError: when it is not finite.
    """
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


def parse_ts(value: str) -> float:
    """Parse an ISO-8601 timestamp (``Z`` or an offset) to epoch seconds.

    Args:
        value: e.g. ``"2026-11-23T21:00:00.123Z"``.

    Returns:
        Seconds since the epoch.

    Raises:
        ValueError: when the text is not an ISO-8601 date-time.
    """
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError("must be an ISO-8601 date-time such as 2026-11-23T21:00:00.123Z") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    try:
        return dt.timestamp()
    except (OverflowError, OSError):
        raise ValueError("date-time is out of range") from None


def _schema_version(value: int) -> int:
    if value != 1:
        raise ValueError("unsupported schema version; this server accepts schema 1")
    return value


def _ts(value: str) -> str:
    parse_ts(value)
    return value


SchemaVersion = Annotated[StrictInt, AfterValidator(_schema_version)]
_NO_NUL = r"^[^\x00]*$"
Name = Annotated[str, Field(min_length=1, max_length=256, pattern=_NO_NUL), AfterValidator(_clean)]
Text = Annotated[str, Field(max_length=1_000_000, pattern=_NO_NUL), AfterValidator(_clean)]
# Below the 1 MiB body limit even fully \u-escaped, so too long is a 422, not a 413.
Comment = Annotated[str, Field(max_length=20_000, pattern=_NO_NUL), AfterValidator(_clean)]
Timestamp = Annotated[
    str, Field(max_length=64, json_schema_extra={"format": "date-time"}), AfterValidator(_ts)
]
Number = Annotated[float, AfterValidator(finite)]
Count = Annotated[StrictInt, Field(ge=0, le=2**53)]
NonNegative = Annotated[float, Field(ge=0), AfterValidator(finite)]


class Closed(BaseModel):
    """A strict model that refuses unknown fields."""

    model_config = ConfigDict(extra="forbid", strict=True)


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


class Usage(_Open):
    """Token usage of a call."""

    input_tokens: Count | None = None
    output_tokens: Count | None = None


class ErrorInfo(_Open):
    """The error a call raised."""

    type: Text
    message: Text
    status: StrictInt | None = None


class StreamInfo(_Open):
    """How a streamed call ended."""

    status: Literal["completed", "partial", "error"]
    chunks: Count = 0


class SdkInfo(_Open):
    """The SDK that made the call."""

    name: Name
    version: Name | None = None


class CallRecord(Closed):
    """A ``call`` record."""

    schema_: SchemaVersion = Field(alias="schema", json_schema_extra={"const": 1})
    type: Literal["call"]
    id: Name
    ts: Timestamp
    dataset: Name = "default"
    source: Name | None = None
    function: Text | None = None
    input: Any = None
    output: Any = None
    error: ErrorInfo | None = None
    provider: Name | None = None
    requested_model: Name | None = None
    served_model: Name | None = None
    route: Name | None = None
    variant: Name | None = None
    fallback: StrictBool = False
    response_id: Name | None = None
    usage: Usage | None = None
    latency_ms: NonNegative | None = None
    ttft_ms: NonNegative | None = None
    stream: StreamInfo | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    sdk: SdkInfo | None = None


class FeedbackRecord(Closed):
    """A ``feedback`` record."""

    schema_: SchemaVersion = Field(alias="schema", json_schema_extra={"const": 1})
    type: Literal["feedback"]
    id: Name
    ts: Timestamp
    target: Name
    outcome: Literal["success", "failure", "neutral"]
    score: Number | None = None
    comment: Comment | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
