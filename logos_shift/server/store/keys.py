"""Projects and API keys.

A key is ``lsk_`` + 32 random bytes (base64url), so it has 256 bits of
entropy.  Only its SHA-256 is stored.  A slow password hash (bcrypt, argon2)
protects *low-entropy* secrets against guessing; for a random 256-bit key a
single SHA-256 is already infeasible to invert, and it allows an indexed
lookup on every request instead of a slow compare per stored key.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

import sqlalchemy as sa

from .db import Database
from .schema import api_keys, projects

SCOPES: tuple[str, ...] = ("ingest", "admin")
KEY_PREFIX = "lsk_"


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's project and scope."""

    project_id: int
    project: str
    scope: str
    key_id: int

    def allows(self, scope: str) -> bool:
        """Return True when this key may use endpoints of ``scope``.

        Args:
            scope: ``"ingest"`` or ``"admin"``; admin keys may do everything.

        Returns:
            Whether the call is allowed.
        """
        return self.scope == "admin" or scope == self.scope


@dataclass(frozen=True)
class KeyInfo:
    """A stored key, without its secret."""

    id: int
    project: str
    scope: str
    prefix: str
    created_at: float
    revoked: bool


def hash_key(key: str) -> str:
    """Return the stored form of a key (hex SHA-256).

    Args:
        key: the full secret key.

    Returns:
        64 hex characters.
    """
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def ensure_project(db: Database, name: str) -> int:
    """Return the id of project ``name``, creating it if needed.

    Args:
        db: the database.
        name: project name (1-100 characters).

    Returns:
        The project id.

    Raises:
        ValueError: for an empty or over-long name.
    """
    if not name or len(name) > 100 or "\x00" in name:
        raise ValueError("project name must be 1-100 characters")
    with db.write() as conn:
        row = conn.execute(sa.select(projects.c.id).where(projects.c.name == name)).first()
        if row is not None:
            return int(row[0])
        result = conn.execute(
            projects.insert().values(name=name, created_at=time.time(), config_version=0)
        )
        pk = result.inserted_primary_key
        assert pk is not None
        return int(pk[0])


def create_key(db: Database, project: str, scope: str) -> tuple[str, KeyInfo]:
    """Create an API key for ``project`` (created if missing).

    Args:
        db: the database.
        project: project name.
        scope: ``"ingest"`` or ``"admin"``.

    Returns:
        ``(secret_key, info)``; the secret is not stored and cannot be shown again.

    Raises:
        ValueError: for an unknown scope or a bad project name.
    """
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {', '.join(SCOPES)}")
    project_id = ensure_project(db, project)
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    now = time.time()
    prefix = key[:12]
    with db.write() as conn:
        result = conn.execute(
            api_keys.insert().values(
                project_id=project_id,
                key_hash=hash_key(key),
                prefix=prefix,
                scope=scope,
                created_at=now,
                revoked_at=None,
            )
        )
        pk = result.inserted_primary_key
        assert pk is not None
    return key, KeyInfo(int(pk[0]), project, scope, prefix, now, False)


def list_keys(db: Database, project: str | None = None) -> list[KeyInfo]:
    """List keys (never their secrets), optionally for one project.

    Args:
        db: the database.
        project: only this project's keys when given.

    Returns:
        Keys ordered by id.
    """
    query = (
        sa.select(api_keys, projects.c.name)
        .join(projects, projects.c.id == api_keys.c.project_id)
        .order_by(api_keys.c.id)
    )
    if project is not None:
        query = query.where(projects.c.name == project)
    with db.read() as conn:
        rows = conn.execute(query).mappings().all()
    return [
        KeyInfo(
            int(r["id"]),
            str(r["name"]),
            str(r["scope"]),
            str(r["prefix"]),
            float(r["created_at"]),
            r["revoked_at"] is not None,
        )
        for r in rows
    ]


def revoke_key(db: Database, key_id: int) -> bool:
    """Revoke a key by id.

    Args:
        db: the database.
        key_id: the id shown by :func:`list_keys`.

    Returns:
        True if an active key was revoked.
    """
    with db.write() as conn:
        result = conn.execute(
            api_keys.update()
            .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
            .values(revoked_at=time.time())
        )
    return bool(result.rowcount)


def authenticate(db: Database, key: str) -> Principal | None:
    """Return the principal for a presented key, or None if unknown or revoked.

    Args:
        db: the database.
        key: the bearer token as sent.

    Returns:
        The principal, or None.
    """
    if not key.startswith(KEY_PREFIX) or len(key) > 200:
        return None
    query = (
        sa.select(api_keys.c.id, api_keys.c.scope, projects.c.id, projects.c.name)
        .join(projects, projects.c.id == api_keys.c.project_id)
        .where(api_keys.c.key_hash == hash_key(key), api_keys.c.revoked_at.is_(None))
    )
    with db.read() as conn:
        row = conn.execute(query).first()
    if row is None:
        return None
    return Principal(
        project_id=int(row[2]), project=str(row[3]), scope=str(row[1]), key_id=int(row[0])
    )


def session_secret(db: Database, key_id: int) -> tuple[Principal, str] | None:
    """Return a live key's principal and its stored hash (the dashboard's session secret).

    The dashboard signs its session cookie with the hash of the admin key that
    signed in: every worker can check it without a shared secret, and revoking the
    key ends its sessions.

    Args:
        db: the database.
        key_id: the key's id.

    Returns:
        ``(principal, key hash)``, or None when the key is unknown or revoked.
    """
    query = (
        sa.select(api_keys.c.scope, api_keys.c.key_hash, projects.c.id, projects.c.name)
        .join(projects, projects.c.id == api_keys.c.project_id)
        .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
    )
    with db.read() as conn:
        row = conn.execute(query).first()
    if row is None:
        return None
    principal = Principal(
        project_id=int(row[2]), project=str(row[3]), scope=str(row[0]), key_id=key_id
    )
    return principal, str(row[1])
