"""The server's packages import only downwards: stats and store at the bottom, the app on top.

``stats`` is pure arithmetic; ``outbound`` (the address policy and the pinned HTTP
client) and ``settings`` (what the operator configures) are leaves; ``store`` is every
table and query (it may read the rollout value types of ``rollout/types.py``, a leaf);
``finetune`` and ``rollout`` build on them; ``api`` on all of those; ``app.py``
assembles everything.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SERVER = Path(__file__).resolve().parents[2] / "logos_shift" / "server"

#: What each part of the server may import from the server (besides itself).
ALLOWED: dict[str, set[str]] = {
    "stats": set(),
    "events": set(),
    "errors": set(),
    "outbound": set(),
    "settings": {"outbound"},
    "ratelimit": {"settings"},
    "rollout.types": {"stats"},
    "store": {"rollout.types", "stats"},
    "finetune": {"store", "outbound", "settings"},
    "rollout": {"store", "stats", "finetune", "events", "rollout.types", "outbound", "settings"},
    "deps": {"store", "errors", "settings", "ratelimit"},
    "api": {
        "store",
        "stats",
        "finetune",
        "rollout",
        "rollout.types",
        "deps",
        "errors",
        "events",
        "outbound",
        "settings",
        "ratelimit",
    },
}


def _part(module: str) -> str:
    """The layer of ``logos_shift.server.X.Y``: ``rollout.types`` or the first component."""
    rest = module.removeprefix("logos_shift.server").lstrip(".")
    if rest.startswith("rollout.types"):
        return "rollout.types"
    return rest.split(".")[0]


def _imports(path: Path) -> set[str]:
    module = "logos_shift." + ".".join(path.relative_to(SERVER.parent).with_suffix("").parts)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)
    return {m for m in found if m.startswith("logos_shift.server.")}


def _dotted(path: Path) -> str:
    return ".".join(path.relative_to(SERVER).with_suffix("").parts)


FILES = sorted(p for p in SERVER.rglob("*.py") if _part(_dotted(p)) in ALLOWED)


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(SERVER)) for p in FILES])
def test_server_imports_only_downwards(path: Path) -> None:
    """A module imports its own part of the server and the parts below it, nothing above."""
    rel = _dotted(path)
    own = _part(rel)
    allowed = ALLOWED[own] | {own}
    wrong = sorted(m for m in _imports(path) if _part(m) not in allowed)
    assert not wrong, f"{rel} ({own}) must not import {wrong}"
