"""HTTP endpoints of fine-tuning and rollouts, and :func:`install` to add them to an app.

* ``POST /v1/finetune`` — build the dataset, launch the job, start the rollout.
* ``GET /v1/routes/{route}/rollout`` — state, policy, job, evidence and events.
* ``GET /v1/routes/{route}/rollout/failures`` — the calls rolled-back models of
  the route's dataset failed on (kept for the next dataset).
* ``POST /v1/routes/{route}/rollout/{action}`` — ``pause``, ``resume``, ``rollback``,
  ``promote`` or ``evaluate`` (run the engine on the evidence now).
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from logos_shift.server.deps import AdminKey, no_unknown_query
from logos_shift.server.finetune.backend import FineTuneError
from logos_shift.server.finetune.dataset import DatasetError
from logos_shift.server.finetune.targets import BackendRefused
from logos_shift.server.outbound import OutboundRefused
from logos_shift.server.ratelimit import retry_after
from logos_shift.server.rollout.service import RolloutService
from logos_shift.server.rollout.types import FinetuneRequest, TransitionError
from logos_shift.server.store import queries as _queries
from logos_shift.server.store.launches import QuotaExceeded

from .models import SHARED_ERRORS, RouteName, error_doc
from .strict_json import StrictJSONRoute

__all__ = ["FinetuneIn", "build_router", "install"]

Action = Literal["pause", "resume", "rollback", "promote", "evaluate"]


def _finite_tree(value: dict[str, Any]) -> dict[str, Any]:
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            raise ValueError("numbers must be finite")
        if isinstance(item, int) and not isinstance(item, bool) and abs(item) > 10**15:
            raise ValueError("numbers must be within ±1e15")  # a 400-digit integer, say
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return value


Finite = Annotated[float, Field(allow_inf_nan=False)]
Seconds = Annotated[float, Field(allow_inf_nan=False, ge=0, le=1e11)]


class FinetuneIn(BaseModel):
    """Body of ``POST /v1/finetune``.

    The backend is one the operator configured (``backend``, or the default one
    when absent), or the project's own: ``backend_url`` *with* ``backend_api_key``,
    held to the server's outbound address policy.
    """

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
    backend: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        pattern=r"^[a-z0-9][a-z0-9_.-]*$",
        description="A backend the server's operator configured (default: the default one).",
    )
    backend_url: str | None = Field(
        default=None,
        max_length=2048,
        pattern=r"^https?://",
        description="The project's own OpenAI-compatible fine-tuning API root (public "
        "addresses only, unless the operator allows more); needs backend_api_key.",
    )
    backend_api_key: str | None = Field(
        default=None,
        min_length=1,
        max_length=4096,
        description="The project's key for backend_url (never stored).",
    )
    min_score: Finite | None = Field(default=None, description="Also train on score >= this.")
    since: Seconds | None = Field(default=None, description="Only calls at or after (Unix s).")
    until: Seconds | None = Field(default=None, description="Only calls before (Unix s).")
    policy: Annotated[dict[str, Any], AfterValidator(_finite_tree)] = Field(
        default_factory=dict, description="Rollout policy overrides."
    )
    webhook_url: str | None = Field(
        default=None,
        max_length=2048,
        pattern=r"^https?://",
        description="Notified of every event, signed (see the answer's webhook_secret).",
    )
    seed: int | None = Field(default=None, ge=0, le=2**31 - 1, description="Training seed.")


def _service(request: Request) -> RolloutService:
    service: RolloutService = request.app.state.rollout
    return service


def _error(
    status: int,
    code: str,
    message: str,
    details: list[Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {"error": code, "message": message}
    if details is not None:
        body["details"] = details
    return JSONResponse(body, status_code=status, headers=headers)


#: The errors only these endpoints answer (the shared ones come with the router).
_FINETUNE_ERRORS: dict[int | str, dict[str, Any]] = {
    409: error_doc("The route already has a rollout in progress"),
    422: error_doc("Invalid body, policy, dataset (too small, malformed), backend or refused URL"),
    429: error_doc("Rate limited, or the project's fine-tune launches of 24 hours are used", True),
    502: error_doc("The backend failed (a status and a fixed message); the route stays on control"),
}
_ROUTE_ERRORS: dict[int | str, dict[str, Any]] = {
    404: error_doc("The route has no rollout"),
    409: error_doc("The action does not apply to the rollout's state"),
}


def build_router() -> APIRouter:
    """Create the fine-tuning and rollout router.

    Returns:
        The router (needs ``app.state.rollout``; see :func:`install`).
    """
    router = APIRouter(
        tags=["rollout"],
        responses=SHARED_ERRORS,
        dependencies=[Depends(no_unknown_query)],
        route_class=StrictJSONRoute,
    )

    @router.post("/v1/finetune", status_code=202, responses=_FINETUNE_ERRORS)
    async def finetune(body: FinetuneIn, request: Request, principal: AdminKey) -> Any:
        """Build the dataset, launch a fine-tuning job and start the route's rollout.

        With a ``webhook_url`` the answer holds ``webhook_secret``, shown only here: it
        signs every delivery (``X-Logos-Signature``).
        """
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
        except QuotaExceeded as exc:
            wait = retry_after(exc.retry_after_s)
            return _error(429, "quota_exceeded", str(exc), headers={"Retry-After": wait})
        except FineTuneError as exc:
            return _error(502, "backend_failed", f"{exc}; the route stays on control")
        except OutboundRefused as exc:
            return _error(422, "refused_url", str(exc))
        except BackendRefused as exc:
            return _error(422, "invalid_backend", str(exc))
        except ValueError as exc:
            return _error(422, "invalid_policy", str(exc))

    @router.get("/v1/routes/{route}/rollout", responses={404: _ROUTE_ERRORS[404]})
    def rollout_status(route: RouteName, request: Request, principal: AdminKey) -> Any:
        """The route's rollout: state, policy, job, evidence and every event."""
        try:
            return _service(request).status(principal.project_id, route)
        except KeyError as exc:
            return _error(404, "not_found", str(exc.args[0]))

    @router.get("/v1/routes/{route}/rollout/failures", responses={404: _ROUTE_ERRORS[404]})
    def rollout_failures(route: RouteName, request: Request, principal: AdminKey) -> Any:
        """Calls rolled-back models failed (feedback failure, error, fallback), kept."""
        try:
            return _service(request).failures(principal.project_id, route)
        except KeyError as exc:
            return _error(404, "not_found", str(exc.args[0]))

    @router.post("/v1/routes/{route}/rollout/{action}", responses=_ROUTE_ERRORS)
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

    Raises:
        ValueError: the app has a different service already (``create_app`` installs
            one unless ``extensions=False``: configure it with ``create_app(rollout=...,
            backend_factory=...)`` instead of passing a second one here).
    """
    existing = getattr(app.state, "rollout", None)
    if isinstance(existing, RolloutService):
        if service is not None and service is not existing:
            raise ValueError(
                "this app has a rollout service already: configure it with "
                "create_app(rollout=RolloutSettings(...), backend_factory=...), or build "
                "the app with extensions=False before installing your own"
            )
        return existing  # installed already (idempotent)
    service = service or RolloutService(app.state.db)
    if service.settings is None:
        service.settings = getattr(app.state, "settings", None)
    app.state.rollout = service
    app.include_router(build_router())
    return service
