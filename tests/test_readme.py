"""The README stays true to the code."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
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


def _block_after(marker: str) -> str:
    """The Python code block of the README that contains ``marker``."""
    for block in README.split("```python\n")[1:]:
        code = block.split("```", 1)[0]
        if marker in code:
            return code
    raise AssertionError(f"no code block with {marker!r}")


def test_testing_example_runs(tmp_path: Path) -> None:
    """The "Testing your app" example passes as a user's own pytest run."""
    code = _block_after("# test_app.py")
    conftest, _, test_app = code.partition("# test_app.py\n")
    (tmp_path / "conftest.py").write_text(conftest)
    (tmp_path / "test_app.py").write_text(test_app)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGOS_SHIFT_")}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error", "."],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 passed" in proc.stdout


def test_rollout_policy_table_lists_every_key() -> None:
    """Every rollout policy key is in the README's policy table with its default."""
    from logos_shift.server.rollout.types import Policy

    defaults = Policy().to_json()
    for field in dataclasses.fields(Policy):
        assert f"| `{field.name}` | " in README, field.name
        value = defaults[field.name]
        if isinstance(value, bool):
            shown = "true" if value else "false"
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            shown = f"{value:g}"
        else:
            continue
        assert f"| `{field.name}` | `{shown}` |" in README, (field.name, shown)


def test_frameworks_table_lists_the_tested_versions() -> None:
    """Each framework pinned for ``make test-frameworks`` is in the README with its version."""
    makefile = (Path(__file__).resolve().parent.parent / "Makefile").read_text()
    section = README.split("## Frameworks", 1)[1].split("\n## ", 1)[0]
    frameworks = ("openai-agents", "pydantic-ai-slim", "langchain-openai", "langchain-anthropic",
                  "instructor", "llama-index-llms-openai")  # fmt: skip
    pins = re.findall(r"'([a-z-]+)(?:\[[^]]*\])?==([0-9.]+)'", makefile)
    tested = {(name, version) for name, version in pins if name in frameworks}
    assert {name for name, _ in tested} == set(frameworks)
    for name, version in tested:
        row = next(line for line in section.splitlines() if line.startswith(f"| `{name}` |"))
        assert f"| {version} |" in row, (name, version, row)


def test_keys_in_the_readme_look_like_real_keys() -> None:
    """The README shows keys with the prefix `keys create` really prints (lsk_), never ls_."""
    from logos_shift.server.store.keys import KEY_PREFIX

    assert KEY_PREFIX == "lsk_"
    assert re.search(r"\bls_\.\.\.", README) is None
    assert "lsk_..." in README


def test_the_demo_policy_is_stated_in_the_readme() -> None:
    """The demo's non-default policy is written out where the README describes the demo."""
    import json

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
    try:
        import full_loop
    finally:
        sys.path.pop(0)
    demo = README.split("**The demo**", 1)[1][:600]
    assert json.dumps(full_loop.POLICY) in " ".join(demo.split()).replace("{ ", "{")


def test_the_command_line_table_lists_every_command() -> None:
    """Every `logos-shift` command is in the README's Command line table."""
    import argparse

    from logos_shift.cli import build_parser

    section = README.split("## Command line", 1)[1].split("\n## ", 1)[0]
    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    for name in sub.choices:
        assert f"| `logos-shift {name}" in section, name


def test_the_install_commands_name_real_extras() -> None:
    """Every extra the README's install lines name exists in pyproject.toml."""
    import tomllib

    project = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())
    extras = set(project["project"]["optional-dependencies"])
    named = re.findall(r"pip install '(?:\.|logos-shift)\[([a-z,]+)\]'", README)
    assert named
    for group in named:
        assert set(group.split(",")) <= extras, group


def test_security_tables_list_every_limit_and_rate_limit() -> None:
    """Every server limit is in the README's limits table with its default, and every rate
    limit (with its default) in the rate limits table."""
    from logos_shift.server import Limits, RateLimits

    security = README.split("## Security", 1)[1].split("\n## ", 1)[0]

    def shown(value: float) -> str:
        return str(int(value)) if float(value).is_integer() else str(value)

    for field in dataclasses.fields(Limits):
        value = getattr(Limits(), field.name)
        assert f"| `{field.name}` | `{shown(value)}` |" in security, field.name
    for field in dataclasses.fields(RateLimits):
        value = getattr(RateLimits(), field.name)
        assert f"`{field.name}`" in security, field.name
        assert f"`{shown(value)}`" in security, (field.name, value)
