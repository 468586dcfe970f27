"""A/B routing of decorated functions between the original and named variants."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from logos_shift.testing import capture_records


def _routes(tmp_path: Path, pct: float, fallback: bool = True, kill: bool = False) -> str:
    config = {
        "version": 1,
        "routes": {
            "search": {
                "match": {"dataset": "search"},
                "control": {"name": "v1", "model": "v1"},
                "variants": [{"name": "v2", "model": "v2", "callable": "v2", "fallback": fallback}],
                "assignment": {"unit": "user_id", "seed": "search", "bucket_version": 1},
                "rollout": {"variant_pct": pct, "holdout_pct": 0.0},
                "kill_switch": kill,
            }
        },
    }
    path = tmp_path / "routes.json"
    path.write_text(json.dumps(config))
    return str(path)


def test_all_traffic_to_variant(tmp_path: Path) -> None:
    """At 100 % every call runs the variant and the record names it."""
    with capture_records(routes=_routes(tmp_path, 1.0)) as cap:

        def search_v2(q: str) -> str:
            return f"v2:{q}"

        @cap.client(dataset="search", variants={"v2": search_v2})
        def search(q: str) -> str:
            return f"v1:{q}"

        assert search("x", logos_shift_metadata={"user_id": "u1"}) == "v2:x"
        [rec] = cap.calls
    assert rec["route"] == "search"
    assert rec["variant"] == "v2"
    assert rec["output"] == "v2:x"
    assert rec["fallback"] is False


def test_sticky_share_of_users(tmp_path: Path) -> None:
    """About the configured share of users gets the variant, always the same one."""
    with capture_records(routes=_routes(tmp_path, 0.3)) as cap:

        @cap.client(dataset="search", variants={"v2": lambda q: "v2"})
        def search(q: str) -> str:
            return "v1"

        first = {u: search("q", logos_shift_metadata={"user_id": f"u{u}"}) for u in range(2000)}
        again = {u: search("q", logos_shift_metadata={"user_id": f"u{u}"}) for u in range(2000)}
    assert first == again
    share = sum(v == "v2" for v in first.values()) / len(first)
    assert 0.25 < share < 0.35


def test_variant_failure_falls_back(tmp_path: Path) -> None:
    """A failing variant is retried on the original; the record keeps its error."""
    with capture_records(routes=_routes(tmp_path, 1.0)) as cap:

        def broken(q: str) -> str:
            raise ConnectionError("variant down")

        @cap.client(dataset="search", variants={"v2": broken})
        def search(q: str) -> str:
            return "v1"

        assert search("q", logos_shift_metadata={"user_id": "u"}) == "v1"
        [rec] = cap.calls
    assert rec["fallback"] is True
    assert rec["variant"] == "v2"
    assert rec["error"]["type"] == "ConnectionError"
    assert rec["output"] == "v1"


def test_variant_failure_without_fallback_raises(tmp_path: Path) -> None:
    """With fallback off, the variant's exception reaches the caller unchanged."""
    err = ValueError("nope")
    with capture_records(routes=_routes(tmp_path, 1.0, fallback=False)) as cap:

        def broken(q: str) -> str:
            raise err

        @cap.client(dataset="search", variants={"v2": broken})
        def search(q: str) -> str:
            return "v1"

        with pytest.raises(ValueError) as info:
            search("q", logos_shift_metadata={"user_id": "u"})
        assert info.value is err


def test_kill_switch_sends_to_original(tmp_path: Path) -> None:
    """The kill switch routes every call to the original."""
    with capture_records(routes=_routes(tmp_path, 1.0, kill=True)) as cap:

        @cap.client(dataset="search", variants={"v2": lambda q: "v2"})
        def search(q: str) -> str:
            return "v1"

        assert search("q", logos_shift_metadata={"user_id": "u"}) == "v1"


def test_async_variant(tmp_path: Path) -> None:
    """Async functions route to async variants."""
    with capture_records(routes=_routes(tmp_path, 1.0)) as cap:

        async def v2(q: str) -> str:
            return "v2"

        @cap.client(dataset="search", variants={"v2": v2})
        async def search(q: str) -> str:
            return "v1"

        assert asyncio.run(search("q", logos_shift_metadata={"user_id": "u"})) == "v2"
        assert cap.calls[0]["variant"] == "v2"


def test_router_failure_calls_original(tmp_path: Path) -> None:
    """A router that raises internally leaves the call on the original."""
    from logos_shift import _guard

    _guard.FAULTS.add("router")
    with capture_records(routes=_routes(tmp_path, 1.0)) as cap:

        @cap.client(dataset="search", variants={"v2": lambda q: "v2"})
        def search(q: str) -> str:
            return "v1"

        assert search("q", logos_shift_metadata={"user_id": "u"}) == "v1"


def test_bad_variants_argument(tmp_path: Path) -> None:
    """variants must map names to callables."""
    with capture_records() as cap, pytest.raises(TypeError):
        cap.client(dataset="x", variants={"v2": "not callable"})  # type: ignore[dict-item]
