"""Fixtures of the end-to-end tests: the databases of the server tests (SQLite, PostgreSQL)."""

from __future__ import annotations

from tests.server.support import db_url, postgres_url

__all__ = ["db_url", "postgres_url"]  # fixtures defined in support, registered here
