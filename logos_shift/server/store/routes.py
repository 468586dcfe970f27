"""A project's A/B routes and the config document built from them.

Routes are validated with the router's own schema code
(:mod:`logos_shift.routing`), and the whole resulting config is
validated again before a change is stored, so the server can never serve a
config the client would refuse (for example two routes with the same match).
Every change bumps the project's ``config_version``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from logos_shift.routing import ConfigError, validate_config, validate_route

from .db import Database
from .schema import projects, routes

__all__ = ["ConfigError", "delete_route", "get_config", "get_route", "list_routes", "put_route"]


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def _servable(name: str, route: dict[str, Any]) -> None:
    """Refuse a route the config endpoint could not serve (it answers UTF-8 JSON)."""
    try:
        json.dumps(route, ensure_ascii=False, allow_nan=False).encode("utf-8")
    except (ValueError, UnicodeError):
        raise ConfigError(
            [f"routes.{name}: must be finite JSON numbers and valid UTF-8 text"]
        ) from None


def _load(conn: Connection, project_id: int, lock: bool = False) -> tuple[int, dict[str, Any]]:
    query = sa.select(projects.c.config_version).where(projects.c.id == project_id)
    if lock:
        # Serialises concurrent route changes on PostgreSQL (SQLite already
        # holds the write lock), so versions never repeat.
        query = query.with_for_update()
    version = conn.execute(query).scalar_one()
    rows = conn.execute(
        sa.select(routes.c.name, routes.c.body)
        .where(routes.c.project_id == project_id)
        .order_by(routes.c.name)
    )
    return int(version), {str(name): json.loads(body) for name, body in rows}


def get_config(db: Database, project_id: int) -> tuple[dict[str, Any], str]:
    """Build the project's config document and its ETag.

    Args:
        db: the database.
        project_id: the project.

    Returns:
        ``(config, etag)``; the config is exactly ``validate_config(...).to_json()``.
    """
    cache = db.config_cache
    with db.read() as conn:
        version = conn.execute(
            sa.select(projects.c.config_version).where(projects.c.id == project_id)
        ).scalar_one()
        cached = cache.get(project_id)
        # Every route change bumps the version, so an equal version means an
        # equal config: polls (mostly 304s) skip loading and re-validating.
        if cached is not None and cached[0] == version:
            return copy.deepcopy(cached[1]), cached[2]
        version, bodies = _load(conn, project_id)
    config = validate_config({"version": version, "routes": bodies}).to_json()
    digest = hashlib.sha256(_canonical(config).encode()).hexdigest()[:32]
    etag = f'"{digest}"'
    cache[project_id] = (version, copy.deepcopy(config), etag)
    return config, etag


def list_routes(db: Database, project_id: int) -> dict[str, Any]:
    """Return every route of the project by name.

    Args:
        db: the database.
        project_id: the project.

    Returns:
        ``{name: route_json}``.
    """
    with db.read() as conn:
        return _load(conn, project_id)[1]


def get_route(db: Database, project_id: int, name: str) -> dict[str, Any] | None:
    """Return one route, or None if the project has no route of that name.

    Args:
        db: the database.
        project_id: the project.
        name: route name.

    Returns:
        The route's JSON or None.
    """
    with db.read() as conn:
        body = conn.execute(
            sa.select(routes.c.body).where(routes.c.project_id == project_id, routes.c.name == name)
        ).scalar()
    return None if body is None else dict(json.loads(body))


def put_route(
    db: Database, project_id: int, name: str, obj: object
) -> tuple[dict[str, Any], int, bool]:
    """Create or replace a route and bump the config version.

    Also the hook the rollout engine uses to move a route between stages.

    Args:
        db: the database.
        project_id: the project.
        name: route name.
        obj: the decoded JSON route.

    Returns:
        ``(normalised_route, new_config_version, created)``.

    Raises:
        ConfigError: when the route, or the config it would produce, is invalid.
    """
    route = validate_route(name, obj).to_json()
    # The validator refuses such values already; a route is stored only if it is served.
    _servable(name, route)
    with db.write() as conn:
        version, bodies = _load(conn, project_id, lock=True)
        created = name not in bodies
        bodies[name] = route
        validate_config({"version": version + 1, "routes": bodies})
        if created:
            conn.execute(
                routes.insert().values(
                    project_id=project_id, name=name, body=_canonical(route), updated_at=time.time()
                )
            )
        else:
            conn.execute(
                routes.update()
                .where(routes.c.project_id == project_id, routes.c.name == name)
                .values(body=_canonical(route), updated_at=time.time())
            )
        conn.execute(
            projects.update().where(projects.c.id == project_id).values(config_version=version + 1)
        )
    return route, version + 1, created


def delete_route(db: Database, project_id: int, name: str) -> int | None:
    """Delete a route and bump the config version.

    Args:
        db: the database.
        project_id: the project.
        name: route name.

    Returns:
        The new config version, or None when there was no such route.
    """
    with db.write() as conn:
        result = conn.execute(
            routes.delete().where(routes.c.project_id == project_id, routes.c.name == name)
        )
        if not result.rowcount:
            return None
        version = conn.execute(
            projects.update()
            .where(projects.c.id == project_id)
            .values(config_version=projects.c.config_version + 1)
            .returning(projects.c.config_version)
        ).scalar_one()
    return int(version)
