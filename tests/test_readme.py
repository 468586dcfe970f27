"""The README stays true to the code."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from logos_shift import _settings

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_configuration_table_lists_every_setting() -> None:
    """Every setting appears in the configuration table with its env var."""
    for field in dataclasses.fields(_settings.Settings):
        assert f"| `{field.name}` | `{_settings.env_name(field.name)}` |" in README, field.name


def test_quick_start_commands() -> None:
    """The quick start names exactly the two commands that work on a fresh machine."""
    assert "make demo" in README
    assert "make test" in README
