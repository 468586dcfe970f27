"""HTTP endpoints for reading data: datasets, calls, one call, waiting feedback, export,
route stats, prices."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import StreamingResponse

from logos_shift.server.deps import DB, AdminKey
from logos_shift.server.errors import ApiError
from logos_shift.server.stats import variants as _stats
from logos_shift.server.store import prices as _prices
from logos_shift.server.store import queries as _queries
from logos_shift.server.store import routes as _routes
from logos_shift.server.store.records import parse_ts

from .models import PriceIn, RouteName

#: The server refuses NUL anywhere in a URL (400): the schema says so too.
NO_NUL = r"^[^\x00]*$"
DatasetName = Annotated[str, Path(min_length=1, max_length=256, pattern=NO_NUL)]
ModelName = Annotated[str, Path(min_length=1, max_length=256, pattern=NO_NUL)]
Since = Annotated[
    str | None,
    Query(
        max_length=64,
        pattern=NO_NUL,
        description="ISO-8601 date-time; calls at or after it.",
        json_schema_extra={"format": "date-time"},
    ),
]
Until = Annotated[
    str | None,
    Query(
        max_length=64,
        pattern=NO_NUL,
        description="ISO-8601 date-time; calls before it.",
        json_schema_extra={"format": "date-time"},
    ),
]
Outcome = Annotated[
    Literal["success", "failure", "neutral", "none"] | None,
    Query(description="Latest feedback outcome; `none` = calls without feedback."),
]
MinScore = Annotated[
    float | None, Query(allow_inf_nan=False, description="Latest feedback score at least this.")
]
Text = Annotated[str | None, Query(min_length=1, max_length=256, pattern=NO_NUL)]


_CALLS_PAGE: dict[str, Any] = {
    "type": "object",
    "required": ["calls", "next_cursor"],
    "properties": {
        "calls": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["record", "feedback"],
                "properties": {
                    "record": {"type": "object", "description": "The call record as ingested."},
                    "feedback": {
                        "type": "object",
                        "properties": {
                            "outcome": {"type": ["string", "null"]},
                            "score": {"type": ["number", "null"]},
                            "count": {"type": "integer"},
                        },
                    },
                },
            },
        },
        "next_cursor": {"type": ["string", "null"]},
    },
}


def _time_param(name: str, value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return parse_ts(value)
    except ValueError:
        raise ApiError(400, f"{name} must be an ISO-8601 date-time") from None


def add_routes(router: APIRouter) -> None:
    """Add the read-side endpoints to ``router``.

    Args:
        router: the API router (it carries the shared error responses).
    """

    @router.get("/v1/routes/{route}/stats", tags=["routes"])
    def route_stats(
        route: RouteName, principal: AdminKey, db: DB, since: Since = None, until: Until = None
    ) -> dict[str, Any]:
        """Per-variant calls, feedback and success rates (Wilson 95 %), errors, latency, cost.

        404 for a route that is neither configured nor named by any call (a typo).
        """
        if _routes.get_route(db, principal.project_id, route) is None and not (
            _queries.route_has_calls(db, principal.project_id, route)
        ):
            known = sorted(_routes.list_routes(db, principal.project_id))
            raise ApiError(
                404,
                f"no route {route!r} in this project (no route config and no call names it); "
                f"known routes: {', '.join(known) if known else 'none yet'}",
            )
        rows = _queries.stats_rows(
            db,
            principal.project_id,
            route,
            _time_param("since", since),
            _time_param("until", until),
        )
        table = _prices.effective_table(db, principal.project_id)
        variants = _stats.variant_stats(rows, lambda m: _prices.lookup(table, m))
        return {"route": route, "variants": variants}

    @router.get("/v1/datasets", tags=["datasets"])
    def datasets(principal: AdminKey, db: DB) -> dict[str, Any]:
        """The project's datasets with call counts and time range."""
        return {"datasets": _queries.list_datasets(db, principal.project_id)}

    def _filter(
        name: str,
        since: str | None,
        until: str | None,
        outcome: str | None,
        variant: str | None,
        model: str | None,
        min_score: float | None,
    ) -> _queries.CallFilter:
        return _queries.CallFilter(
            dataset=name,
            since=_time_param("since", since),
            until=_time_param("until", until),
            outcome=outcome,
            variant=variant,
            model=model,
            min_score=min_score,
        )

    @router.get(
        "/v1/datasets/{name}/calls",
        tags=["datasets"],
        response_class=StreamingResponse,
        responses={200: {"content": {"application/json": {"schema": _CALLS_PAGE}}}},
    )
    def dataset_calls(
        name: DatasetName,
        principal: AdminKey,
        db: DB,
        request: Request,
        since: Since = None,
        until: Until = None,
        outcome: Outcome = None,
        variant: Text = None,
        model: Text = None,
        min_score: MinScore = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        cursor: Annotated[str | None, Query(max_length=1024, pattern=NO_NUL)] = None,
        order: Annotated[
            Literal["oldest", "newest"],
            Query(description="`oldest` first (default) or `newest` first."),
        ] = "oldest",
    ) -> StreamingResponse:
        """A page of the dataset's calls, oldest (or newest) first; pass `next_cursor` on.

        A page ends after `limit` calls or once their records reach the server's
        `max_page_bytes` (8 MiB by default; always at least one call), streamed.
        """
        f = _filter(name, since, until, outcome, variant, model, min_score)
        max_bytes = request.app.state.limits.max_page_bytes
        try:
            chunks = _queries.list_calls(
                db,
                principal.project_id,
                f,
                cursor,
                limit,
                max_bytes,
                newest_first=order == "newest",
            )
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
        return StreamingResponse(chunks, media_type="application/json")

    @router.get("/v1/calls/{call_id}", tags=["datasets"])
    def one_call(
        call_id: Annotated[str, Path(min_length=1, max_length=256)],
        principal: AdminKey,
        db: DB,
    ) -> dict[str, Any]:
        """One call by its id or its provider response id, with every feedback event."""
        found = _queries.get_call(db, principal.project_id, call_id)
        if found is None:
            raise ApiError(
                404,
                f"no call {call_id!r} in this project (neither a call id nor a provider "
                "response id; it may not have been uploaded yet)",
            )
        return found

    @router.get("/v1/feedback/pending", tags=["ingest"])
    def feedback_pending(
        principal: AdminKey, db: DB, limit: Annotated[int, Query(ge=1, le=1000)] = 100
    ) -> dict[str, Any]:
        """Feedback whose call has not arrived yet, oldest first (a wrong id waits forever)."""
        return _queries.pending_feedback(db, principal.project_id, limit)

    @router.get(
        "/v1/datasets/{name}/export",
        tags=["datasets"],
        response_class=StreamingResponse,
        responses={200: {"content": {"application/x-ndjson": {}}}},
    )
    def dataset_export(
        name: DatasetName,
        principal: AdminKey,
        db: DB,
        request: Request,
        format: Literal["raw", "openai-chat"] = "raw",
        outcome: Outcome = None,
        min_score: MinScore = None,
        since: Since = None,
        until: Until = None,
        variant: Text = None,
        model: Text = None,
    ) -> StreamingResponse:
        """Streamed JSONL: raw records, or OpenAI chat fine-tuning examples (with tools)."""
        f = _filter(name, since, until, outcome, variant, model, min_score)
        max_bytes = request.app.state.limits.max_page_bytes
        return StreamingResponse(
            _queries.export_stream(db, principal.project_id, f, format, max_bytes),
            media_type="application/x-ndjson",
        )

    @router.get("/v1/prices", tags=["prices"])
    def get_prices(principal: AdminKey, db: DB) -> dict[str, Any]:
        """The model price table (USD per million tokens): defaults plus this project's."""
        table = _prices.effective_table(db, principal.project_id)
        return {
            "prices": {
                m: {"input_per_mtok": p[0], "output_per_mtok": p[1]}
                for m, p in sorted(table.items())
            }
        }

    @router.put("/v1/prices/{model:path}", tags=["prices"])
    def put_price(
        model: ModelName,
        body: PriceIn,
        principal: AdminKey,
        db: DB,
    ) -> dict[str, Any]:
        """Set this project's price for a model (or a model-name prefix)."""
        _prices.set_price(
            db, principal.project_id, model, body.input_per_mtok, body.output_per_mtok
        )
        return {"model": model, **body.model_dump()}

    @router.delete("/v1/prices/{model:path}", tags=["prices"], status_code=204)
    def delete_price(model: ModelName, principal: AdminKey, db: DB) -> Response:
        """Remove this project's own price for a model (the default applies again)."""
        if not _prices.delete_price(db, principal.project_id, model):
            raise ApiError(404, f"this project has no own price for {model!r}")
        return Response(status_code=204)
