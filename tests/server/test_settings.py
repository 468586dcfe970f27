"""The operator's settings: the config file, backends from the environment, clear errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from logos_shift.server import AddressPolicy, Backend, Limits, RateLimits, ServerSettings
from logos_shift.server.settings import SettingsError


def test_the_config_file_sets_every_section(tmp_path: Path) -> None:
    """Backends (key inline or from an env variable), outbound, finetune, limits, rate limits."""
    path = tmp_path / "server.json"
    path.write_text(json.dumps({
        "backends": {
            "openai": {"base_url": "https://api.openai.com/v1", "api_key_env": "MY_OPENAI_KEY"},
            "local": {"base_url": "http://10.0.0.5:9000/v1", "api_key": "inline"},
        },
        "default_backend": "openai",
        "finetune": {"launches_per_day": 3, "allow_project_backends": False},
        "outbound": {"allow_private": False, "allow_networks": ["10.20.0.0/16"]},
        "webhooks": {"timeout_s": 2},
        "limits": {"max_record_bytes": 2097152, "header_timeout_s": 5},
        "rate_limits": {"ingest_per_s": 50, "admin_burst": 10},
    }))  # fmt: skip
    s = ServerSettings.load(path, environ={"MY_OPENAI_KEY": "sk-env"})
    assert s.backend_for(None) == Backend("openai", "https://api.openai.com/v1", "sk-env")
    assert s.backend_for("local") is not None
    assert (s.launches_per_day, s.allow_project_backends, s.webhook_timeout_s) == (3, False, 2.0)
    assert s.outbound == AddressPolicy(allow_networks=("10.20.0.0/16",))
    assert s.limits == Limits(max_record_bytes=2097152, header_timeout_s=5)
    assert s.rate_limits == RateLimits(ingest_per_s=50, admin_burst=10)
    assert "sk-env" not in repr(s)


def test_backends_come_from_the_environment_too() -> None:
    """LOGOS_SHIFT_BACKEND_<NAME>_URL/_KEY define backends; LOGOS_SHIFT_FINETUNE_API_KEY is
    the backend 'default' (OpenAI unless LOGOS_SHIFT_FINETUNE_BASE_URL says otherwise)."""
    env = {
        "LOGOS_SHIFT_BACKEND_TOGETHER_URL": "https://api.together.xyz/v1",
        "LOGOS_SHIFT_BACKEND_TOGETHER_KEY": "tg",
        "LOGOS_SHIFT_FINETUNE_API_KEY": "sk-legacy",
    }
    s = ServerSettings.load(environ=env)
    assert sorted(s.backends) == ["default", "together"]
    assert s.backends["default"].base_url == "https://api.openai.com/v1"
    assert s.backend_for(None) == s.backends["default"]
    assert ServerSettings.load(environ={}).backend_for(None) is None


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"backend": {}}, "unknown setting"),
        ({"limits": {"header_timeout_s": 0}}, "limits.header_timeout_s"),
        ({"limits": {"max_record_bytes": "1MB"}}, "limits.max_record_bytes"),
        ({"rate_limits": {"admin_per_s": -1}}, "rate_limits.admin_per_s"),
        ({"outbound": {"allow_networks": ["not a cidr"]}}, "not a CIDR"),
        ({"backends": {"x": {"base_url": "https://h/v1"}}}, "api_key"),
        ({"backends": {"x": {"base_url": "ftp://h", "api_key": "k"}}}, "base_url"),
        ({"backends": {"x": {"base_url": "https://h/v1?k=1", "api_key": "k"}}}, "base_url"),
        ({"default_backend": "nope"}, "default_backend"),
    ],
)
def test_invalid_settings_name_the_setting(data: dict[str, object], message: str) -> None:
    """Every invalid value is a SettingsError naming what is wrong."""
    with pytest.raises(SettingsError, match=message):
        ServerSettings.from_json(data, environ={})


def test_the_server_command_refuses_an_invalid_config(tmp_path: Path) -> None:
    """`logos-shift server --config` with a bad file exits 2 with the reason, serving nothing."""
    bad = tmp_path / "bad.json"
    bad.write_text('{"limits": {"max_connections": -1}}')
    argv = [sys.executable, "-m", "logos_shift", "server", "--port", "0", "--config", str(bad),
            "--database-url", f"sqlite:///{tmp_path / 'x.db'}"]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "limits.max_connections" in done.stderr
