"""Packaging: every runtime requirement has an upper bound; PostgreSQL's driver is its own extra."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
RUNTIME_EXTRAS = ("openai", "anthropic", "server", "postgres")


def _name(req: str) -> str:
    return re.split(r"[\[<>=!~; ]", req, maxsplit=1)[0].lower()


def test_every_runtime_requirement_has_an_upper_bound() -> None:
    """Core dependencies and the user-facing extras pin below the next major release."""
    reqs = list(PROJECT["dependencies"])
    for extra in RUNTIME_EXTRAS:
        reqs += PROJECT["optional-dependencies"][extra]
    unbounded = [r for r in reqs if _name(r) != "logos-shift" and "<" not in r]
    assert unbounded == []


def test_sqlite_users_do_not_get_the_postgres_driver() -> None:
    """`[server]` has no psycopg; `[postgres]` is the server plus the driver."""
    server = {_name(r) for r in PROJECT["optional-dependencies"]["server"]}
    postgres = PROJECT["optional-dependencies"]["postgres"]
    assert "psycopg" not in server
    assert "logos-shift[server]" in postgres
    assert any(_name(r) == "psycopg" for r in postgres)
