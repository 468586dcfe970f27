"""``create_app(rollout=RolloutSettings(...), backend_factory=...)`` configures the rollouts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import requests

from logos_shift.server import (
    Backend,
    Database,
    RolloutSettings,
    ServerSettings,
    create_app,
    create_key,
    serve_in_thread,
)
from logos_shift.server.finetune.backend import OpenAICompatibleBackend
from logos_shift.testing import FakeProvider
from tests.server.rollout.support import Server, seed_dataset, start_finetune


def test_create_app_takes_rollout_settings_and_a_backend_factory(
    db_url: str, fake_provider: FakeProvider
) -> None:
    """The factory builds every backend a launch uses (with the chosen backend's URL and
    key), and the service runs with the settings given, no attribute set afterwards."""
    built: list[tuple[str | None, str | None]] = []

    def factory(base_url: str | None, api_key: str | None) -> Any:
        built.append((base_url, api_key))
        return OpenAICompatibleBackend(base_url, api_key)

    settings = ServerSettings(
        backends={"fake": Backend("fake", fake_provider.openai_base_url, "k")}
    )
    rollout = RolloutSettings(interval_s=2.0, poll_s=(0.01, 0.05), webhook_backoff_s=0.01)
    app = create_app(db_url, settings=settings, rollout=rollout, backend_factory=factory)
    service = app.state.rollout
    assert (service.poll_s, service.webhook_backoff_s) == ((0.01, 0.05), 0.01)
    assert app.state.rollout_settings == rollout
    admin, _ = create_key(app.state.db, "acme", "admin")
    ingest, _ = create_key(app.state.db, "acme", "ingest")
    with serve_in_thread(app) as running, requests.Session() as http:
        server = Server(running.url, admin, ingest, service, http)
        seed_dataset(server)
        start_finetune(server, fake_provider, {"min_stage_s": 0})
        assert built[:1] == [(fake_provider.openai_base_url, "k")]
        status = server.get("/v1/routes/support/rollout").json()
        assert status["state"]["status"] == "canary", status["events"][-1]
        service.close()


@pytest.mark.parametrize(
    "bad",
    [{"interval_s": 0}, {"debounce_s": -1}, {"poll_s": (1.0, 0.5)}, {"webhook_retries": -1}],
)
def test_invalid_rollout_settings_are_refused(bad: dict[str, Any]) -> None:
    """Settings that cannot work (a zero interval, polls shrinking) raise ValueError at once."""
    with pytest.raises(ValueError, match="RolloutSettings"):
        RolloutSettings(**bad)


def test_a_second_rollout_service_is_refused_not_ignored(tmp_path: Path) -> None:
    """``install(app, service)`` on an app that has its service already raises and names
    ``create_app(rollout=...)``, instead of silently keeping the first one."""
    from logos_shift.server import RolloutService
    from logos_shift.server.api.rollout import install

    app = create_app(f"sqlite:///{tmp_path / 'l.db'}")
    first = app.state.rollout
    assert install(app) is first  # installing again is a no-op
    with pytest.raises(ValueError, match=r"create_app\(rollout=RolloutSettings"):
        install(app, RolloutService(app.state.db))
    assert app.state.rollout is first


def test_loop_timings_come_from_the_argument_else_the_environment(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``rollout=`` sets the loop's interval, debounce and lease; without it the
    ``$LOGOS_SHIFT_ROLLOUT_*`` variables do, over the defaults."""
    monkeypatch.setenv("LOGOS_SHIFT_ROLLOUT_LEASE_S", "3")
    db = Database(db_url)  # not served: the test owns (and disposes) the engine
    try:
        app = create_app(db, settings=ServerSettings())
        assert app.state.rollout_settings == RolloutSettings(lease_s=3.0)
        given = RolloutSettings(interval_s=1.0, debounce_s=0.1, lease_s=2.0)
        app = create_app(db, settings=ServerSettings(), rollout=given)
        assert app.state.rollout_settings is given
    finally:
        db.dispose()
