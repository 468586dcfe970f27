"""The dashboard's pages: sign-in, overview, calls, one call, a route's rollout, money.

Every page needs an admin session (see :mod:`._session`); every POST carries the
session's CSRF token.  Reads go through ``store.queries`` (bounded pages) and the
rollout service, exactly as the JSON API does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import jinja2
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from logos_shift.server.ratelimit import RateLimiter, retry_after
from logos_shift.server.rollout.engine import variant_pct
from logos_shift.server.rollout.service import RolloutService
from logos_shift.server.rollout.types import RolloutState, TransitionError
from logos_shift.server.stats import variants as _stats
from logos_shift.server.stats.savings import PriceOf, cost_of, variant_savings
from logos_shift.server.store import prices as _prices
from logos_shift.server.store import queries as _queries
from logos_shift.server.store import rollouts as _rollouts
from logos_shift.server.store import routes as _routes
from logos_shift.server.store.db import Database
from logos_shift.server.store.keys import Principal, authenticate

from . import _present, _session

PAGE_SIZE = 50
#: Most record bytes one calls page reads (a page always shows at least one call).
PAGE_BYTES = 2 * 1024 * 1024
#: How many of the newest matching calls a text search reads.
SEARCH_WINDOW = 5000
OUTCOMES = ("success", "failure", "neutral", "none")
ACTIONS = ("pause", "resume", "rollback")
_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'self'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}

_env = jinja2.Environment(
    loader=jinja2.PackageLoader("logos_shift.server.api.ui", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)
_env.filters.update(usd=_present.usd, pct=_present.pct, when=_present.when)


@dataclass(frozen=True)
class Session:
    """A signed-in admin: the key's principal, the cookie and its CSRF token."""

    principal: Principal
    secret: str
    cookie: str

    @property
    def csrf(self) -> str:
        """The token every form of this session posts."""
        return _session.csrf_token(self.secret, self.cookie)


def _db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


def _render(name: str, session: Session | None, status: int = 200, **context: Any) -> HTMLResponse:
    html = _env.get_template(name).render(
        session=session, project=session.principal.project if session else None, **context
    )
    return HTMLResponse(html, status_code=status, headers=_HEADERS)


def _current(request: Request) -> Session | None:
    cookie = request.cookies.get(_session.COOKIE)
    found = _session.check_cookie(_db(request), cookie)
    if found is None or cookie is None:
        return None
    return Session(found[0], found[1], cookie)


def _to_login() -> Response:
    return RedirectResponse("/ui/login", status_code=303, headers=_HEADERS)


def _same_origin(request: Request) -> bool:
    """Whether a POST's Origin (when the browser sends one) is this server."""
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    return urlsplit(origin).netloc == request.headers.get("host", request.url.netloc)


async def _form(request: Request) -> dict[str, str]:
    body = (await request.body())[:16384]
    parsed = parse_qs(body.decode("utf-8", "replace"), max_num_fields=20)
    return {k: v[0] for k, v in parsed.items()}


def _price_of(db: Database, project_id: int) -> PriceOf:
    table = _prices.effective_table(db, project_id)
    return lambda model: _prices.lookup(table, model)


def _service(request: Request) -> RolloutService | None:
    service = getattr(request.app.state, "rollout", None)
    return service if isinstance(service, RolloutService) else None


def build_router() -> APIRouter:
    """Create the dashboard's router (pages under ``/ui``).

    Returns:
        The router.
    """
    router = APIRouter(prefix="/ui", include_in_schema=False)

    @router.get("/login")
    def login_page(request: Request) -> Response:
        """The sign-in form."""
        if _current(request) is not None:
            return RedirectResponse("/ui/", status_code=303, headers=_HEADERS)
        return _render("login.html", None, error=None)

    @router.post("/login")
    async def login(request: Request) -> Response:
        """Check an admin key and start a session (the key itself is not kept)."""
        if not _same_origin(request):
            return _render("login.html", None, 403, error="sign-in from another site refused")
        key = (await _form(request)).get("key", "").strip()
        limiter: RateLimiter = request.app.state.rate_limiter
        address = request.client.host if request.client else "unknown"
        wait = limiter.blocked(address)
        if wait:
            msg = f"too many wrong keys from this address; retry in {retry_after(wait)} s"
            return _render("login.html", None, 429, error=msg)
        principal = await run_in_threadpool(authenticate, _db(request), key)
        if principal is None:
            limiter.failed(address)
            return _render("login.html", None, 401, error="invalid or revoked API key")
        if principal.scope != "admin":
            return _render(
                "login.html",
                None,
                403,
                error="this is an ingest key: the dashboard needs an admin key",
            )
        found = await run_in_threadpool(_session.secret_of, _db(request), principal.key_id)
        if found is None:
            return _render("login.html", None, 401, error="invalid or revoked API key")
        cookie = _session.make_cookie(found, principal.key_id)
        response = RedirectResponse("/ui/", status_code=303, headers=_HEADERS)
        response.set_cookie(
            _session.COOKIE,
            cookie,
            max_age=_session.LIFETIME_S,
            path="/ui",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    @router.post("/logout")
    async def logout(request: Request) -> Response:
        """End the session."""
        session = _current(request)
        form = await _form(request)
        if session is None or not _session.csrf_ok(session.secret, session.cookie,
                                                    form.get("csrf")):  # fmt: skip
            return _render("error.html", session, 403, message="missing or wrong CSRF token")
        response = _to_login()
        response.delete_cookie(_session.COOKIE, path="/ui")
        return response

    @router.get("/")
    def overview(request: Request) -> Response:
        """Datasets and routes at a glance."""
        session = _current(request)
        if session is None:
            return _to_login()
        db, pid = _db(request), session.principal.project_id
        datasets = _queries.list_datasets(db, pid)
        routes = []
        for name in sorted(_routes.list_routes(db, pid)):
            row = _rollouts.load(db, pid, name)
            words = (
                _present.status_words(row.state.to_json(), variant_pct(row.state))
                if row
                else "no rollout"
            )
            routes.append({"name": name, "status": words})
        return _render("overview.html", session, datasets=datasets, routes=routes)

    @router.get("/calls")
    def calls_page(request: Request) -> Response:
        """A filtered page of calls, newest first; a search by id or by text."""
        session = _current(request)
        if session is None:
            return _to_login()
        db, pid = _db(request), session.principal.project_id
        q = request.query_params
        args = {k: q.get(k, "")[:256] for k in ("dataset", "model", "outcome", "q", "cursor")}
        datasets = _queries.dataset_names(db, pid)
        if "dataset" not in q and datasets:
            # One dataset's newest calls come off its (dataset, ts) index; "all" is a choice.
            args["dataset"] = datasets[0]
        price_of = _price_of(db, pid)
        rows: list[dict[str, Any]] = []
        nxt: str | None = None
        error = None
        f = _queries.CallFilter(
            dataset=args["dataset"] or None,
            model=args["model"] or None,
            outcome=args["outcome"] if args["outcome"] in OUTCOMES else None,
        )
        if args["q"]:
            found = _queries.get_call(db, pid, args["q"])
            hits = (
                [found]
                if found is not None
                else _queries.search_calls(
                    db, pid, f, args["q"], PAGE_SIZE, PAGE_BYTES, SEARCH_WINDOW
                )
            )
            rows = [_present.summary(c["record"], c["feedback"], price_of) for c in hits]
        else:
            try:
                chunks = _queries.list_calls(
                    db, pid, f, args["cursor"] or None, PAGE_SIZE, PAGE_BYTES, newest_first=True
                )
            except ValueError as exc:
                error = str(exc)
            else:
                page = json.loads(b"".join(chunks))
                rows = [_present.summary(c["record"], c["feedback"], price_of)
                        for c in page["calls"]]  # fmt: skip
                nxt = page["next_cursor"]
        more = None
        if nxt:
            kept = {k: v for k, v in args.items() if v or k == "dataset"}  # "" is "all"
            more = "/ui/calls?" + urlencode({**kept, "cursor": nxt})
        return _render(
            "calls.html",
            session,
            rows=rows,
            args=args,
            more=more,
            error=error,
            datasets=datasets,
            outcomes=OUTCOMES,
            window=SEARCH_WINDOW,
        )

    @router.get("/calls/{call_id}")
    def call_page(call_id: str, request: Request) -> Response:
        """One call: its conversation, output, feedback, numbers and raw record."""
        session = _current(request)
        if session is None:
            return _to_login()
        db, pid = _db(request), session.principal.project_id
        found = _queries.get_call(db, pid, call_id[:256])
        if found is None:
            msg = f"no call {call_id[:256]!r} in this project"
            return _render("error.html", session, 404, message=msg)
        record = found["record"]
        return _render(
            "call.html",
            session,
            row=_present.summary(record, found["feedback"], _price_of(db, pid)),
            turns=_present.conversation(record),
            feedback=found["feedback_events"],
            raw=json.dumps(record, indent=2, ensure_ascii=False),
        )

    def _rollout_page(
        request: Request, session: Session, route: str, status: int = 200, error: str | None = None
    ) -> Response:
        db, pid = _db(request), session.principal.project_id
        service = _service(request)
        try:
            if service is None:
                raise KeyError(route)
            st = service.status(pid, route)
        except KeyError:
            return _render("error.html", session, 404, message=f"route {route!r} has no rollout")
        state = RolloutState.from_json(st["state"])
        rows = _queries.stats_rows(db, pid, route, None, None)
        arms = _stats.variant_stats(rows, _price_of(db, pid))
        return _render(
            "rollout.html",
            session,
            status=status,
            route=route,
            state=st["state"],
            words=_present.status_words(st["state"], variant_pct(state)),
            share=st["variant_pct"],
            arms=arms,
            events=list(reversed(st["events"])),
            actions=ACTIONS,
            error=error,
        )

    @router.get("/routes/{route}")
    def rollout_page(route: str, request: Request) -> Response:
        """A route's rollout: status in words, evidence per arm, the event log, actions."""
        session = _current(request)
        if session is None:
            return _to_login()
        return _rollout_page(request, session, route[:128])

    @router.post("/routes/{route}/action")
    async def rollout_action(route: str, request: Request) -> Response:
        """Pause, resume or roll back (the rollout service's manual actions)."""
        session = _current(request)
        form = await _form(request)
        if session is None or not _session.csrf_ok(session.secret, session.cookie,
                                                    form.get("csrf")):  # fmt: skip
            return _render("error.html", session, 403, message="missing or wrong CSRF token")
        action = form.get("action", "")
        service = _service(request)
        if action not in ACTIONS or service is None:
            return _render("error.html", session, 400, message=f"unknown action {action!r}")
        by = f"dashboard, key {session.principal.key_id}"
        try:
            await run_in_threadpool(
                service.action, session.principal.project_id, route[:128], action, by
            )
        except KeyError:
            return _render("error.html", session, 404, message=f"route {route!r} has no rollout")
        except TransitionError as exc:
            return await run_in_threadpool(
                _rollout_page, request, session, route[:128], 409, str(exc)
            )
        return RedirectResponse(f"/ui/routes/{route[:128]}", status_code=303, headers=_HEADERS)

    @router.get("/money")
    def money_page(request: Request) -> Response:
        """Cost per dataset and model, and what each route's variant saved versus control."""
        session = _current(request)
        if session is None:
            return _to_login()
        db, pid = _db(request), session.principal.project_id
        price_of = _price_of(db, pid)
        usage = _queries.usage_totals(db, pid)
        table: dict[tuple[str, str], dict[str, Any]] = {}
        for u in usage:
            key = (str(u["dataset"]), str(u["model"] or "—"))
            t = table.setdefault(
                key, {"calls": 0, "input_tokens": 0, "output_tokens": 0, "cost": 0.0}
            )
            t["calls"] += u["calls"]
            t["input_tokens"] += u["input_tokens"]
            t["output_tokens"] += u["output_tokens"]
            c = cost_of(price_of(u["model"]), u["input_tokens"], u["output_tokens"])
            t["cost"] = None if c is None or t["cost"] is None else t["cost"] + c
        savings = []
        for name, route in sorted(_routes.list_routes(db, pid).items()):
            row = _rollouts.load(db, pid, name)
            if row is None:
                continue
            control = str((route.get("control") or {}).get("name") or "control")
            rows = [u for u in usage if u["route"] == name]
            s = variant_savings(rows, control, row.state.control_model, price_of)
            savings.append({"route": name, "variant": row.state.variant_model,
                            "control": row.state.control_model, **s})  # fmt: skip
        return _render(
            "money.html",
            session,
            table=[{"dataset": d, "model": m, **t} for (d, m), t in sorted(table.items())],
            savings=savings,
        )

    return router
