"""Database commands as a new user meets them: a missing directory, the wrong directory, a
port already in use — each a one-line error naming what is wrong, in a real process."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("fastapi")


def _run(*args: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "logos_shift", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_read_commands_in_an_empty_directory_create_nothing(tmp_path: Path) -> None:
    """`keys list` / `keys revoke` where there is no database exit 2 naming the path they
    looked at, and leave no ./logos.db behind."""
    for argv in (["keys", "list"], ["keys", "revoke", "1"]):
        result = _run(*argv, cwd=tmp_path)
        assert result.returncode == 2, result.stderr
        assert result.stderr.startswith(f"error: no database at {tmp_path / 'logos.db'} ")
        assert "--database-url" in result.stderr
        assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_keys_create_says_it_creates_a_new_database(tmp_path: Path) -> None:
    """The first `keys create` makes the database and says where, on stderr; the next
    command finds it."""
    result = _run("keys", "create", "--project", "shop", "--scope", "ingest", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("lsk_")
    assert f"creating a new database at {tmp_path / 'logos.db'}" in result.stderr
    again = _run("keys", "list", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "creating" not in again.stderr
    assert "shop" in again.stdout


@pytest.mark.parametrize(
    "argv",
    [
        ["keys", "create", "--project", "shop", "--scope", "admin"],
        ["migrate"],
        ["server", "--port", "0"],
    ],
    ids=["keys-create", "migrate", "server"],
)
def test_a_database_in_a_missing_directory_is_one_line_naming_it(
    tmp_path: Path, argv: list[str]
) -> None:
    """sqlite:///missing/dir/x.db gives one error line naming the file and its missing
    directory, exit 2, no traceback."""
    path = tmp_path / "missing" / "dir" / "x.db"
    result = _run(*argv, "--database-url", f"sqlite:///{path}", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"error: cannot open the database {path}: the directory {path.parent} does not exist "
        "(create it, or pass another --database-url / $LOGOS_SHIFT_DATABASE_URL)"
    ]
    assert not (tmp_path / "missing").exists()


def test_a_postgres_server_that_is_not_there_is_one_line(tmp_path: Path) -> None:
    """An unreachable PostgreSQL URL is one error line with the password hidden."""
    url = "postgresql://me:secret@127.0.0.1:9/nodb"
    result = _run("keys", "list", "--database-url", url, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("error: cannot open the database postgresql+psycopg://me:***@")
    assert "secret" not in result.stderr
    assert "Traceback" not in result.stderr


def test_a_port_in_use_is_the_first_and_only_error(tmp_path: Path) -> None:
    """`logos-shift server` on a taken port exits 2 at once with one line saying so, before
    any log line, and creates no database."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = _run("server", "--port", str(port), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"error: port {port} on 127.0.0.1 is already in use (another logos-shift server? "
        "stop it, or choose another port with --port)"
    ]
    assert list(tmp_path.iterdir()) == []
