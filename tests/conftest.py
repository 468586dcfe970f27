"""Fixtures shared by the whole suite."""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from logos_shift import _guard
from logos_shift._capture import scope
from logos_shift._transport import serialize as _serialize
from logos_shift._transport.worker import WORKER

# The public fake provider fixture, as users enable it in their own suites.
pytest_plugins = ["logos_shift.testing"]

#: The default ``repr`` of an object: what a record must never hold (issue 11).
OBJECT_REPR = re.compile(r"<[^<>\"]*? object at 0x[0-9a-fA-F]+>")
_OBJECT_REPR_BYTES = re.compile(rb"<[^<>\"]*? object at 0x[0-9a-fA-F]+>")


def placeholder_fields(tree: Any, path: str = "$") -> list[str]:
    """Return ``"path: text"`` for every key or string in ``tree`` holding an object repr."""
    found: list[str] = []
    if isinstance(tree, dict):
        for key, value in tree.items():
            if OBJECT_REPR.search(str(key)):
                found.append(f"{path} (key): {key}")
            found.extend(placeholder_fields(value, f"{path}.{key}"))
    elif isinstance(tree, list):
        for i, value in enumerate(tree):
            found.extend(placeholder_fields(value, f"{path}[{i}]"))
    elif isinstance(tree, str) and OBJECT_REPR.search(tree):
        found.append(f"{path}: {tree[:200]}")
    return found


class _ReprCheck:
    """Collects the records encoded in this process that hold ``<… object at 0x…>``.

    Installed as :data:`logos_shift._transport.serialize.ON_ENCODED`, so it sees every record
    on its way to any sink (memory, local copy, server) on the background thread.
    A cheap bytes search runs per record; only a hit is decoded to name the field.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.found: list[str] = []

    def __call__(self, line: bytes) -> None:
        if _OBJECT_REPR_BYTES.search(line) is None:
            return
        try:
            tree = json.loads(line)
            where = f"{tree.get('type')} record from {tree.get('source') or tree.get('function')}"
            hits = placeholder_fields(tree)
        except Exception as exc:  # never break the worker thread; still report
            where, hits = "record", [f"(undecodable: {exc!r})"]
        with self.lock:
            self.found.extend(f"{where}: {hit}" for hit in hits)

    def take(self) -> list[str]:
        with self.lock:
            found, self.found = self.found, []
        return found


_REPR_CHECK = _ReprCheck()


#: Tests of more than a few seconds each (subprocesses, whole examples, fuzzing, benchmarks),
#: by path and function name: marked ``slow`` here, in one place, so `make test` stays fast
#: and `make test-all` (CI) runs them.  Measured on the 2-core machine; each took 5-100 s.
SLOW_TESTS = frozenset(
    {
        "tests/test_examples.py::test_example_runs_offline",
        "tests/test_readme.py::test_testing_example_runs",
        "tests/test_benchmarks_smoke.py::test_bench_core_quick_prints_every_row",
        "tests/test_layering.py::test_a_deliberate_violation_fails_the_lint",
        "tests/providers/test_patching.py::test_failure_injection",
        "tests/providers/test_patching.py::test_same_exception_object",
        "tests/providers/test_patching.py::test_stacking_with_opentelemetry",
        "tests/providers/test_bench.py::test_quick_benchmark_prints_every_row",
        "tests/server/api/test_fuzz.py::test_api_conforms_and_never_fails",
        "tests/server/rollout/test_clients.py::"
        "test_patched_clients_follow_each_stage_promotion_and_rollback",
        "tests/e2e/test_demo.py::test_full_loop_demo",
        "tests/e2e/test_self_host_example.py::test_self_host_example",
        "tests/e2e/test_server_command.py::test_server_command_serves_logs_json_and_stops_gracefully",
        "tests/e2e/test_server_command.py::test_sigterm_lets_an_in_flight_upload_finish",
        "tests/testing/test_lifecycle.py::test_pytest_plugin_provides_fixture",
    }
)
_PG_REASON = "LOGOS_SHIFT_TEST_POSTGRES_URL is not set (.ci/run sets it)"


def _select_tier(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Leave the slow and PostgreSQL tests out of the default run, counting them for the summary.

    ``--all`` (``make test-all``, CI) keeps the slow tests, and the PostgreSQL ones when
    ``LOGOS_SHIFT_TEST_POSTGRES_URL`` is set.  Tests named on the command line by file or
    node id always run.
    """
    explicit = any(arg.split("::")[0].endswith(".py") for arg in config.args)
    run_all = config.getoption("--all") or explicit
    have_pg = bool(os.environ.get("LOGOS_SHIFT_TEST_POSTGRES_URL"))
    keep: list[pytest.Item] = []
    left_out: dict[str, list[pytest.Item]] = {"slow": [], "postgres": []}
    for item in items:
        key = f"{item.path.relative_to(config.rootpath).as_posix()}::"
        key += getattr(item, "originalname", item.name)
        if key in SLOW_TESTS:
            item.add_marker(pytest.mark.slow)
        if item.get_closest_marker("postgres") is not None and not (run_all and have_pg):
            left_out["postgres"].append(item)
        elif item.get_closest_marker("slow") is not None and not run_all:
            left_out["slow"].append(item)
        else:
            keep.append(item)
    if len(keep) < len(items):
        config.hook.pytest_deselected(items=left_out["slow"] + left_out["postgres"])
        items[:] = keep
    config.stash[_LEFT_OUT] = (len(left_out["slow"]), len(left_out["postgres"]), run_all)


_LEFT_OUT = pytest.StashKey[tuple[int, int, bool]]()


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """One line saying which tiers were not run and why (instead of a SKIPPED line each)."""
    slow, pg, run_all = config.stash.get(_LEFT_OUT, (0, 0, False))
    parts = []
    if slow:
        parts.append(f"{slow} slow tests (`make test-all` runs them)")
    if pg:
        why = _PG_REASON if run_all else "`make test-all` with " + _PG_REASON.split(" is ")[0]
        parts.append(f"{pg} PostgreSQL tests ({why})")
    if parts:
        terminalreporter.write_line("not run: " + "; ".join(parts), yellow=True)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Leave the slow and PostgreSQL tiers out of the default run (see ``_select_tier``)."""
    _select_tier(config, items)


_FRAMEWORKS = Path(__file__).parent / "frameworks"


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--frameworks``: collect the framework tier (``make test-frameworks`` passes it);
    ``--all``: run the slow and PostgreSQL tests too (``make test-all``, CI)."""
    parser.addoption(
        "--all",
        action="store_true",
        help="also run the slow tests and, with LOGOS_SHIFT_TEST_POSTGRES_URL set, the "
        "PostgreSQL ones (`make test-all`; CI runs this)",
    )
    parser.addoption(
        "--frameworks",
        action="store_true",
        help="collect tests/frameworks (real agent frameworks; needs their environments, "
        "see `make test-frameworks`)",
    )


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Leave the framework tier out of the default run: its frameworks live in other venvs."""
    if collection_path == _FRAMEWORKS and not config.getoption("--frameworks"):
        return True
    return None


def pytest_report_header(config: pytest.Config) -> str | None:
    """Say why tests/frameworks is not collected, once, instead of skipping each test."""
    if config.getoption("--frameworks"):
        return None
    return "tests/frameworks not collected: the framework tier runs with `make test-frameworks`"


def pytest_configure(config: pytest.Config) -> None:
    """Install the whole-suite record check and register its marker."""
    config.addinivalue_line(
        "markers",
        "object_repr_records(reason, strict=True): this test is known to leave records "
        "holding '<… object at 0x…>' (a library bug named in reason); strict: the test "
        "fails once it no longer does, so whoever fixes the bug removes the marker; "
        "strict=False where a strict xfail test of the same bug carries that duty",
    )
    _serialize.ON_ENCODED = _REPR_CHECK


def pytest_unconfigure(config: pytest.Config) -> None:
    """Remove the record check."""
    if _serialize.ON_ENCODED is _REPR_CHECK:
        _serialize.ON_ENCODED = None


@pytest.fixture(autouse=True)
def _no_object_reprs_in_records(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test whose records hold ``<… object at 0x…>`` anywhere (issue 11).

    Runs its check after every instance was shut down (``_shutdown_clients``
    depends on it, so its teardown comes first), when every record the test
    made has been encoded.
    """
    _REPR_CHECK.take()  # a previous test's stragglers are that test's problem, reported there
    yield
    found = _REPR_CHECK.take()
    marker = request.node.get_closest_marker("object_repr_records")
    if marker is not None:
        reason = marker.kwargs.get("reason") or (marker.args[0] if marker.args else "")
        if not found and marker.kwargs.get("strict", True):
            pytest.fail(
                "marked object_repr_records but no record holds '<… object at 0x…>' any "
                f"more: remove the marker ({reason})",
                pytrace=False,
            )
        return
    if found:
        shown = "\n  ".join(found[:20])
        more = f"\n  … and {len(found) - 20} more" if len(found) > 20 else ""
        pytest.fail(
            f"{len(found)} record field(s) hold an object repr:\n  {shown}{more}", pytrace=False
        )


@pytest.fixture(autouse=True)
def _internal_errors_raise() -> Iterator[None]:
    """Make logos_shift's internal guard re-raise, so no bug hides in a test."""
    _guard.RAISE_INTERNAL = True
    _guard.FAULTS.clear()
    yield
    _guard.FAULTS.clear()


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Remove LOGOS_SHIFT_* settings and point the default spool at a temp dir."""
    for key in list(os.environ):
        if key.startswith(("LOGOS_SHIFT_", "OPENAI_", "ANTHROPIC_")):
            monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(autouse=True)
def _shutdown_clients(_no_object_reprs_in_records: None) -> Iterator[None]:
    """Shut down every instance a test created and reset the default."""
    yield
    with WORKER.lock:
        channels = list(WORKER.channels)
    for ch in channels:
        WORKER.close(ch, 2.0)
    scope.set_default(None)
