"""A rejected key or a wrong URL keeps the data: 401/403/404 on ingest spool, warn, and replay."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import logos_shift
from tests.transport.collector import Collector, assert_accounted, capture


@pytest.fixture
def collector() -> Iterator[Collector]:
    """A running fake ingest server, every socket closed afterwards."""
    with Collector() as c:
        yield c


def _client(url: str, spool: Path, key: str, **kw: Any) -> logos_shift.LogosShift:
    settings: dict[str, Any] = {
        "flush_interval": 0.05, "max_backoff": 0.2, "http_timeout": 2.0, **kw,
    }  # fmt: skip
    return logos_shift.LogosShift(
        server_url=url, api_key=key, spool_dir=str(spool), wait_for_config=0, **settings
    )


@pytest.mark.parametrize(
    ("status", "cause"),
    [
        (401, "rejected the API key"),
        (403, "does not let the API key"),
        (404, "must be the server's base URL"),
    ],
)
def test_config_error_spools_warns_once_and_says_why(
    collector: Collector, tmp_path: Path, caplog: pytest.LogCaptureFixture, status: int, cause: str
) -> None:
    """A 401/403/404 keeps every record in the spool, warns once naming the fix, sets last_error."""
    collector.fail(status)
    ls = _client(collector.url, tmp_path / "spool", "lsk_wrongkey123")
    with caplog.at_level(logging.WARNING, logger="logos_shift"):
        capture(ls, 10)
        assert ls.flush(5)
        capture(ls, 10)
        assert ls.flush(5)
        assert collector.wait_requests(1)
        assert ls.shutdown(2)
    stats = ls.stats()
    assert stats["dropped"] == 0
    assert stats["spooled"] == 20
    assert cause in (stats["last_error"] or "")
    assert stats["spool"]["config_error"] is True
    assert_accounted(stats)
    warnings = [r.getMessage() for r in caplog.records if cause in r.getMessage()]
    assert len(warnings) == 1  # rate-limited: once, however many batches
    assert "fix:" in warnings[0]
    assert "lsk_wron" in warnings[0] or status == 404  # the key's prefix, never the whole key
    assert "lsk_wrongkey123" not in warnings[0]


def test_process_with_the_right_key_replays_what_a_wrong_key_spooled(
    collector: Collector, tmp_path: Path
) -> None:
    """Records spooled under a rejected key are delivered by a later process with a valid key."""
    collector.fail(401)
    wrong = _client(collector.url, tmp_path / "spool", "lsk_revoked")
    lost_ids = capture(wrong, 30)
    assert wrong.flush(5)
    assert wrong.shutdown(2)
    assert wrong.stats()["spooled"] == 30
    collector.up()
    right = _client(collector.url, tmp_path / "spool", "lsk_valid")
    new_ids = capture(right, 5)
    assert collector.wait_for(set(lost_ids) | set(new_ids))
    assert right.shutdown(2)
    assert {r.auth for r in collector.accepted()} == {"Bearer lsk_valid"}
    assert right.stats()["spool"]["config_error"] is False


def test_process_with_the_right_url_replays_what_a_v1_suffix_spooled(
    collector: Collector, tmp_path: Path
) -> None:
    """A server_url ending in /v1 (404) spools; the corrected URL on the same server replays it."""
    collector.fail(404)
    wrong = _client(collector.url + "/v1", tmp_path / "spool", "k")
    lost_ids = capture(wrong, 12)
    assert wrong.flush(5)
    assert wrong.shutdown(2)
    assert "without /v1" in (wrong.stats()["last_error"] or "")
    collector.up()
    right = _client(collector.url, tmp_path / "spool", "k")
    assert collector.wait_for(set(lost_ids))
    assert right.shutdown(2)


def test_records_the_server_rejects_individually_are_dropped_and_counted(
    collector: Collector, tmp_path: Path
) -> None:
    """Per-record errors in a 200 are the only rejections counted as drops, by reason."""
    collector.partial_errors(every=5)
    ls = _client(collector.url, tmp_path / "spool", "k")
    capture(ls, 20)
    assert ls.flush(5)
    assert ls.shutdown(2)
    stats = ls.stats()
    rejected = sum(len(r.rejected) for r in collector.requests)
    assert rejected > 0
    assert stats["dropped_by_reason"] == {"rejected": rejected}
    assert stats["spooled"] == 0
    assert_accounted(stats)


def test_invalid_feedback_keeps_the_accounting_identity(tmp_path: Path) -> None:
    """Feedback refused for a bad outcome is counted as captured and dropped (invalid_feedback)."""
    sink = logos_shift.MemorySink()
    ls = logos_shift.LogosShift(sink=sink)
    ids = capture(ls, 99)
    for i, target in enumerate(ids):
        ls.provide_feedback(target, "bogus" if i % 10 == 0 else "success")
    assert ls.flush(5)
    assert ls.shutdown(2)
    stats = ls.stats()
    assert stats["captured"] == 99 + 99
    assert stats["dropped_by_reason"] == {"invalid_feedback": 10}
    assert_accounted(stats)
