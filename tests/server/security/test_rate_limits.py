"""Rate limits: a token bucket per key (429 + Retry-After), a slow-down per address after
repeated bad keys, and the real client waiting as told without losing a record."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.server.security.conftest import Running


def _settings(**rates: Any) -> Any:
    from logos_shift.server import RateLimits, ServerSettings

    return ServerSettings(rate_limits=RateLimits(**rates))


def test_a_key_over_its_rate_gets_429_with_retry_after(launch: Callable[..., Running]) -> None:
    """An admin key allowed 3 requests in a burst gets 429 on the 4th; other keys are not
    affected; after Retry-After seconds it is served again."""
    server = launch(_settings(admin_per_s=1, admin_burst=3))
    codes = [server.get("/v1/datasets").status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    r = server.get("/v1/datasets")
    assert r.status_code == 429
    assert r.json()["error"] == "rate_limited"
    wait = int(r.headers["Retry-After"])
    assert 1 <= wait <= 2
    assert server.get("/v1/datasets", key=server.other_admin).status_code == 200
    assert server.get("/v1/config", key=server.ingest_key).status_code == 200
    time.sleep(wait)
    assert server.get("/v1/datasets").status_code == 200


def test_repeated_bad_keys_slow_an_address_down(launch: Callable[..., Running]) -> None:
    """After bad_keys_per_address wrong keys, the address gets 429 + Retry-After for a while,
    even with a valid key; unauthenticated /healthz still answers."""
    server = launch(_settings(bad_keys_per_address=5, bad_key_block_s=2))
    wrong = "lsk_" + "x" * 43
    codes = [server.get("/v1/datasets", key=wrong).status_code for _ in range(5)]
    assert codes == [401] * 5
    r = server.get("/v1/datasets", key=wrong)
    assert r.status_code == 429
    assert 1 <= int(r.headers["Retry-After"]) <= 2
    assert server.get("/v1/datasets").status_code == 429
    assert server.http.get(server.url + "/healthz").status_code == 200
    time.sleep(2.1)
    assert server.get("/v1/datasets").status_code == 200


def test_the_client_honours_retry_after_and_loses_nothing(
    launch: Callable[..., Running], tmp_path: Path
) -> None:
    """A client whose ingest key is rate limited waits as told; every record arrives."""
    import logos_shift

    server = launch(_settings(ingest_per_s=2, ingest_burst=2))
    ls = logos_shift.init(
        server_url=server.url, api_key=server.ingest_key, batch_size=5, flush_interval=0.05,
        spool_dir=str(tmp_path / "spool"), state_dir=str(tmp_path / "state"),
    )  # fmt: skip

    @ls(dataset="limited")
    def f(i: int) -> int:
        return i

    for i in range(40):
        f(i)
    assert ls.flush(60)
    deadline = time.monotonic() + 60
    while True:  # what did not fit the rate went to the spool and is replayed from there
        listing = server.get("/v1/datasets").json()["datasets"]
        if listing and listing[0]["calls"] == 40:
            break
        assert time.monotonic() < deadline, (listing, ls.stats())
        time.sleep(0.5)
    stats = ls.stats()
    ls.shutdown(timeout=10)
    assert stats["dropped"] == 0, stats
    assert stats["retries"] + stats["spooled"] > 0, stats
