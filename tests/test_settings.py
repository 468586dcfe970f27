"""Settings: precedence, validation and the seed's constructor form."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import logos_shift
from logos_shift import _settings


def test_argument_beats_env_beats_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """An argument overrides LOGOS_SHIFT_*, which overrides the default."""
    monkeypatch.setenv("LOGOS_SHIFT_BATCH_SIZE", "42")
    monkeypatch.setenv("LOGOS_SHIFT_FLUSH_INTERVAL", "0.5")
    s = _settings.resolve({"batch_size": 7})
    assert s.batch_size == 7
    assert s.flush_interval == 0.5
    assert s.max_queue_items == 10_000


def test_env_booleans_and_strings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Booleans and paths parse from environment variables."""
    monkeypatch.setenv("LOGOS_SHIFT_CAPTURE_CONTENT", "false")
    monkeypatch.setenv("LOGOS_SHIFT_FILENAME", str(tmp_path / "c.jsonl"))
    s = _settings.resolve({})
    assert s.capture_content is False
    assert s.filename == str(tmp_path / "c.jsonl")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"batch_size": -1}, "batch_size must be > 0"),
        ({"max_queue_bytes": 0}, "max_queue_bytes must be > 0"),
        ({"flush_interval": -2.0}, "flush_interval must be > 0 seconds"),
        ({"server_url": "localhost:8600"}, "is not an http(s) URL"),
        ({"server_url": "ftp://example.com"}, "is not an http(s) URL"),
        ({"server_url": "http://host:notaport"}, "invalid port"),
        ({"filename": "/nonexistent-dir-xyz/calls.jsonl"}, "does not exist"),
        ({"batch_size": "10"}, "batch_size must be an integer"),
        ({"capture_content": "yes"}, "capture_content must be true or false"),
    ],
)
def test_bad_settings_raise_at_construction(args: dict[str, object], message: str) -> None:
    """Bad settings raise a clear ValueError when the instance is built."""
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        logos_shift.LogosShift(**args)  # type: ignore[arg-type]


def test_bad_env_value_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    """A malformed environment variable is reported by name."""
    monkeypatch.setenv("LOGOS_SHIFT_BATCH_SIZE", "many")
    with pytest.raises(ValueError, match="LOGOS_SHIFT_BATCH_SIZE"):
        logos_shift.LogosShift(sink=logos_shift.MemorySink())


def test_directory_as_filename_is_rejected(tmp_path: Path) -> None:
    """A directory cannot be the local copy."""
    with pytest.raises(ValueError, match="is a directory"):
        logos_shift.LogosShift(filename=str(tmp_path))


def test_unwritable_file_is_rejected(tmp_path: Path) -> None:
    """A path under a regular file can never be created."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ValueError, match="does not exist"):
        logos_shift.LogosShift(filename=str(blocker / "calls.jsonl"))


def test_unknown_setting_is_a_type_error() -> None:
    """A misspelt setting fails loudly."""
    with pytest.raises(TypeError, match="batchsize"):
        logos_shift.LogosShift(batchsize=3)


def test_api_key_without_server_is_rejected() -> None:
    """A key with nowhere to send records is a configuration error."""
    with pytest.raises(ValueError, match="server_url"):
        logos_shift.LogosShift(api_key="k")


def test_seed_constructor_form(tmp_path: Path) -> None:
    """LogosShift(api_key=None, filename=...) works as in the original client."""
    path = tmp_path / "api_calls.log"
    ls = logos_shift.LogosShift(api_key=None, filename=str(path))

    @ls()
    def add(x: int, y: int) -> dict[str, int]:
        return {"sum": x + y}

    assert add(1, 2)["sum"] == 3
    assert ls.flush(5)
    assert '"sum":3' in path.read_text()
    ls.shutdown()


def test_instances_share_one_thread(tmp_path: Path) -> None:
    """Several instances coexist and share the single worker thread."""
    import threading

    a = logos_shift.LogosShift(filename=str(tmp_path / "a.jsonl"))
    b = logos_shift.LogosShift(filename=str(tmp_path / "b.jsonl"))

    @a(dataset="a")
    def fa() -> int:
        return 1

    @b(dataset="b")
    def fb() -> int:
        return 2

    fa()
    fb()
    assert a.flush(5)
    assert b.flush(5)
    workers = [t for t in threading.enumerate() if t.name == "logos-shift-worker"]
    assert len(workers) == 1
    assert '"dataset":"a"' in (tmp_path / "a.jsonl").read_text()
    assert '"dataset":"b"' in (tmp_path / "b.jsonl").read_text()
    assert os.path.getsize(tmp_path / "a.jsonl") > 0


def test_init_sets_default_and_env_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """init() makes the default instance; env vars configure it."""
    monkeypatch.setenv("LOGOS_SHIFT_SERVER_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("LOGOS_SHIFT_API_KEY", "secret")
    ls = logos_shift.init()
    assert logos_shift.get_client() is ls
    assert ls.settings.server_url == "http://127.0.0.1:9"
    assert ls.settings.api_key == "secret"
    ls.shutdown(timeout=0.5)
