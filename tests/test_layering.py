"""The dependency rules of ``make lint`` (import-linter, pyproject's [tool.importlinter]) bite."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT = Path(sys.executable).with_name("lint-imports")

#: (file to edit, import to add, the contract it breaks)
VIOLATIONS = [
    (
        "logos_shift/_transport/worker.py",
        "from logos_shift._capture import scope",
        "Layers: nothing below imports anything above BROKEN",
    ),
    (
        "logos_shift/routing/router.py",
        "from logos_shift.providers import base",
        "Layers: nothing below imports anything above BROKEN",
    ),
    (
        "logos_shift/server/api/ingest.py",
        "from logos_shift._capture import call",
        "The server imports from the client only routing, the record schema, export and",
    ),
    (
        "logos_shift/testing/_capture.py",
        "from logos_shift import _client",
        "logos_shift.testing uses only the public API BROKEN",
    ),
    (
        "logos_shift/_capture/scope.py",
        "from logos_shift._capture import decorator",
        "No import cycles between the modules of a package BROKEN",
    ),
]


def _copy(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "logos_shift", tmp_path / "logos_shift",
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [str(LINT), "--no-cache", "--config", str(root / "pyproject.toml")],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def lint_available() -> None:
    if not LINT.exists():
        pytest.skip("import-linter is not installed in this environment")


def test_the_package_keeps_every_contract(lint_available: None, tmp_path: Path) -> None:
    """The package as it is keeps every layering contract (so the failures below are real)."""
    result = _lint(_copy(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(("path", "line", "contract"), VIOLATIONS)
def test_a_deliberate_violation_fails_the_lint(
    lint_available: None, tmp_path: Path, path: str, line: str, contract: str
) -> None:
    """Adding one forbidden import to a copy of the package makes `lint-imports` fail."""
    root = _copy(tmp_path)
    target = root / path
    target.write_text(target.read_text() + f"\n{line}  # deliberate violation\n")
    result = _lint(root)
    assert result.returncode != 0
    assert contract in result.stdout, result.stdout
