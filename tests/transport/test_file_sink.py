"""The local JSONL copy: append, flushed per batch, size rotation, optional fsync."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import logos_shift
from logos_shift._transport import sinks as _sinks
from logos_shift._transport.sinks import FileSink
from tests.transport.collector import assert_accounted, capture

ROOT = Path(__file__).resolve().parents[2]


def _read(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_appends_to_an_existing_file(tmp_path: Path) -> None:
    """Records are appended after what the file already holds, never overwriting it."""
    path = tmp_path / "calls.jsonl"
    path.write_text('{"earlier": true}\n')
    ls = logos_shift.LogosShift(filename=str(path), flush_interval=0.05)
    ids = capture(ls, 5)
    assert ls.shutdown(2)
    rows = _read(path)
    assert rows[0] == {"earlier": True}
    assert [r["id"] for r in rows[1:]] == ids
    stats = ls.stats()
    assert stats["sent"] == 5
    assert_accounted(stats)


def test_each_batch_is_on_disk_after_flush(tmp_path: Path) -> None:
    """After flush() another reader sees every record, without closing or shutting down."""
    path = tmp_path / "calls.jsonl"
    ls = logos_shift.LogosShift(filename=str(path), flush_interval=60.0)
    first = capture(ls, 3)
    assert ls.flush(2)
    assert [r["id"] for r in _read(path)] == first
    second = capture(ls, 4)
    assert ls.flush(2)
    assert [r["id"] for r in _read(path)] == first + second
    assert ls.shutdown(2)


def test_rotation_by_size_keeps_the_configured_backups(tmp_path: Path) -> None:
    """Past file_max_bytes the file rotates to .1, .2 ... and at most file_backups are kept."""
    path = tmp_path / "calls.jsonl"
    ls = logos_shift.LogosShift(
        filename=str(path), flush_interval=60.0, file_max_bytes=2000, file_backups=2
    )
    ids: list[str] = []
    for _ in range(12):
        ids += capture(ls, 3)
        assert ls.flush(2)
    assert ls.shutdown(2)
    backups = sorted(p.name for p in tmp_path.iterdir() if p.name != "calls.jsonl")
    assert backups == ["calls.jsonl.1", "calls.jsonl.2"]
    for p in tmp_path.iterdir():
        assert p.stat().st_size < 2000 + 3 * 1000  # rotated right after the batch crossing it
    kept = [r["id"] for name in ("calls.jsonl.2", "calls.jsonl.1", "calls.jsonl")
            if (tmp_path / name).exists() for r in _read(tmp_path / name)]  # fmt: skip
    assert kept == ids[len(ids) - len(kept) :]  # the newest records, in order


def test_rotation_without_backups_starts_over(tmp_path: Path) -> None:
    """With file_backups=0 a full file is removed and a fresh one started."""
    path = tmp_path / "calls.jsonl"
    sink = FileSink(str(path), max_bytes=100, backups=0, fsync=False)
    sink.write([b'{"a": "' + b"x" * 120 + b'"}'])
    assert not path.exists()
    sink.write([b'{"b": 1}'])
    sink.close()
    assert _read(path) == [{"b": 1}]
    assert list(tmp_path.iterdir()) == [path]


@pytest.mark.parametrize("enabled", [True, False])
def test_fsync_option(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, enabled: bool) -> None:
    """file_fsync=True fsyncs the local copy once per batch; off, it never does."""
    calls: list[int] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        calls.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(_sinks.os, "fsync", counting_fsync)
    sink = FileSink(str(tmp_path / "calls.jsonl"), 10**6, 1, fsync=enabled)
    for i in range(3):
        sink.write([b'{"i": %d}' % i, b'{"j": %d}' % i])
    sink.close()
    assert len(calls) == (3 if enabled else 0)
    assert len(_read(tmp_path / "calls.jsonl")) == 6


APPENDER = """
import sys
from logos_shift._transport.sinks import FileSink

sink = FileSink(sys.argv[1], 10**9, 1, fsync=False)
tag = sys.argv[2]
for b in range(200):
    sink.write([('{"w": "%s", "b": %d, "i": %d, "pad": "%s"}' % (tag, b, i, "x" * 300)).encode()
                for i in range(5)])
sink.close()
"""


def test_processes_appending_to_one_file_never_interleave(tmp_path: Path) -> None:
    """Four processes writing batches to one file produce only whole, parseable lines."""
    path = tmp_path / "calls.jsonl"
    script = textwrap.dedent(APPENDER)
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(path), str(w)], cwd=ROOT)
        for w in range(4)
    ]
    for p in procs:
        assert p.wait(60) == 0
    rows = _read(path)  # raises if any line was torn or interleaved
    assert len(rows) == 4 * 200 * 5
    assert {(r["w"], r["b"], r["i"]) for r in rows} == {
        (str(w), b, i) for w in range(4) for b in range(200) for i in range(5)
    }


def test_unwritable_local_copy_is_counted_not_raised(tmp_path: Path) -> None:
    """A local copy that cannot be written (its directory is gone) drops and counts records."""
    sub = tmp_path / "sub"
    sub.mkdir()
    ls = logos_shift.LogosShift(filename=str(sub / "calls.jsonl"), flush_interval=60.0)
    sub.rmdir()
    sub.write_text("now a file: the copy cannot be created")
    capture(ls, 4)
    assert ls.flush(2)
    assert ls.shutdown(2)
    stats = ls.stats()
    assert stats["dropped_by_reason"] == {"file_error": 4}
    assert_accounted(stats)
