"""HTTP endpoints of fine-tuning and rollouts, and :func:`install` to add them to an app.

* ``POST /v1/finetune`` — build the dataset, launch the job, start the rollout.
* ``GET /v1/routes/{route}/rollout`` — state, policy, job, evidence and events.
* ``GET /v1/routes/{route}/rollout/failures`` — the calls rolled-back models of
  the route's dataset failed on (kept for the next dataset).
* ``POST /v1/routes/{route}/rollout/{action}`` — ``pause``, ``resume``, ``rollback``,
  ``promote`` or ``evaluate`` (run the engine on the evidence now).
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from logos_shift.server.deps import AdminKey
from logos_shift.server.finetune.backend import FineTuneError
from logos_shift.server.finetune.dataset import DatasetError
from logos_shift.server.rollout.service import RolloutService
from logos_shift.server.rollout.types import FinetuneRequest, TransitionError
from logos_shift.server.store import queries as _queries

from .models import RouteName

__all__ = ["FinetuneIn", "build_router", "install"]

Action = Literal["pause", "resume", "rollback", "promote", "evaluate"]


class FinetuneIn(BaseModel):
    """Body of ``POST /v1/finetune``."""

    model_config = ConfigDict(extra="forbid")

    dataset: str = Field(min_length=1, max_length=256, description="The dataset to train on.")
    base_model: str = Field(min_length=1, max_length=256, description="The model to fine-tune.")
    route: str | None = Field(
        default=None,
        max_length=128,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:@+-]*$",
        description="The route to roll out on (default: the dataset's name).",
    )
    control_model: str | None = Field(
        default=None, max_length=256, description="Control model (default: most requested)."
    )
    backend_url: str | None = Field(
        default=None, max_length=2048, description="OpenAI-compatible fine-tuning API root."
    )
    backend_api_key: str | None = Field(
        default=None, max_length=4096, description="Key for the backend (never stored)."
    )
    min_score: float | None = Field(default=None, description="Also train on score >= this.")
    since: float | None = Field(default=None, description="Only calls at or after (Unix s).")
    until: float | None = Field(default=None, description="Only calls before (Unix s).")
    policy: dict[str, Any] = Field(default_factory=dict, description="Rollout policy overrides.")
    webhook_url: str | None = Field(
        default=None, max_length=2048, pattern=r"^https?://", description="Notified per event."
    )
    seed: int | None = Field(default=None, description="Training seed.")


def _service(request: Request) -> RolloutService:
    service: RolloutService = request.app.state.rollout
    return service


def _error(status: int, code: str, message: str, details: list[Any] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"error": code, "message": message}
    if details is not None:
        body["details"] = details
    return JSONResponse(body, status_code=status)


def build_router() -> APIRouter:
    """Create the fine-tuning and rollout router.

    Returns:
        The router (needs ``app.state.rollout``; see :func:`install`).
    """
    router = APIRouter(tags=["rollout"])

    @router.post("/v1/finetune", status_code=202)
    async def finetune(body: FinetuneIn, request: Request, principal: AdminKey) -> Any:
        """Build the dataset, launch a fine-tuning job and start the route's rollout."""
        req = FinetuneRequest(**body.model_dump())
        try:
            return await run_in_threadpool(
                _service(request).start_finetune, principal.project_id, req
            )
        except DatasetError as exc:
            known = [d["name"] for d in _queries.list_datasets(request.app.state.db,
                                                                principal.project_id)]  # fmt: skip
            if body.dataset not in known:
                return _error(
                    404,
                    "not_found",
                    f"dataset {body.dataset!r} has no calls in this project; known datasets: "
                    f"{', '.join(known) if known else 'none yet'}",
                )
            return _error(422, "invalid_dataset", str(exc), exc.problems)
        except TransitionError as exc:
            return _error(409, "conflict", str(exc))
        except FineTuneError as exc:
            return _error(502, "backend_failed", f"{exc}; the route stays on control")
        except ValueError as exc:
            return _error(422, "invalid_policy", str(exc))

    @router.get("/v1/routes/{route}/rollout")
    def rollout_status(route: RouteName, request: Request, principal: AdminKey) -> Any:
        """The route's rollout: state, policy, job, evidence and every event."""
        try:
            return _service(request).status(principal.project_id, route)
        except KeyError as exc:
            return _error(404, "not_found", str(exc.args[0]))

    @router.get("/v1/routes/{route}/rollout/failures")
    def rollout_failures(route: RouteName, request: Request, principal: AdminKey) -> Any:
        """Calls rolled-back models failed (feedback failure, error, fallback), kept."""
        try:
            return _service(request).failures(principal.project_id, route)
        except KeyError as exc:
            return _error(404, "not_found", str(exc.args[0]))

    @router.post("/v1/routes/{route}/rollout/{action}")
    def rollout_action(
        route: RouteName, action: Action, request: Request, principal: AdminKey
    ) -> Any:
        """Pause, resume, roll back, promote, or evaluate the rollout now."""
        service = _service(request)
        try:
            if action == "evaluate":
                d = service.evaluate(principal.project_id, route)
            else:
                d = service.action(
                    principal.project_id, route, action, by=f"key {principal.key_id}"
                )
        except KeyError as exc:
            return _error(404, "not_found", str(exc.args[0]))
        except TransitionError as exc:
            return _error(409, "conflict", str(exc))
        return {
            "action": d.action,
            "state": d.state.to_json(),
            "reasons": list(d.reasons),
            "numbers": d.numbers,
        }

    return router


def install(app: FastAPI, service: RolloutService | None = None) -> RolloutService:
    """Add the rollout endpoints and service to a server app.

    Args:
        app: an app from :func:`logos_shift.server.create_app`.
        service: a configured service (default: one on ``app.state.db``).

    Returns:
        The service (also ``app.state.rollout``); ``close()`` it on shutdown.
    """
    existing = getattr(app.state, "rollout", None)
    if isinstance(existing, RolloutService):
        return existing  # installed already (idempotent)
    service = service or RolloutService(app.state.db)
    app.state.rollout = service
    app.include_router(build_router())
    return service
