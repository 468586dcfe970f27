"""Serialisation copes with anything and caps record size."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
import uuid
from decimal import Decimal
from typing import Any

import numpy as np
import pydantic
import pytest

from logos_shift._transport import serialize as _serialize
from logos_shift.testing import capture_records


class Color(enum.Enum):
    RED = "red"


@dataclasses.dataclass
class Point:
    x: int
    y: int


class Model(pydantic.BaseModel):
    name: str
    when: dt.datetime


class BadRepr:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")


class Opaque:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<Opaque>"


def test_rich_values_become_json() -> None:
    """Pydantic, dataclasses, bytes, datetimes, enums, sets, numpy all map to JSON."""
    value = {
        "model": Model(name="a", when=dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)),
        "point": Point(1, 2),
        "bytes": b"hi",
        "binary": b"\xff\x00",
        "when": dt.date(2026, 1, 2),
        "delta": dt.timedelta(seconds=1.5),
        "color": Color.RED,
        "set": {3, 1, 2},
        "np_scalar": np.float32(1.5),
        "np_array": np.arange(3),
        "uuid": uuid.UUID(int=1),
        "decimal": Decimal("1.10"),
        "nan": float("nan"),
        "tuple": (1, "a"),
        1: "int key",
        Color.RED: "enum key",
    }
    out = _serialize.to_jsonable(value)
    json.dumps(out, allow_nan=False)
    assert out["model"] == {"name": "a", "when": "2026-01-02T03:04:05Z"}
    assert out["point"] == {"x": 1, "y": 2}
    assert out["bytes"] == "hi"
    assert out["binary"] == {"_type": "bytes", "base64": "/wA="}
    assert out["when"] == "2026-01-02"
    assert out["delta"] == 1.5
    assert out["color"] == "red"
    assert out["set"] == [1, 2, 3]
    assert out["np_scalar"] == 1.5
    assert out["np_array"] == [0, 1, 2]
    assert out["uuid"] == str(uuid.UUID(int=1))
    assert out["decimal"] == "1.10"
    assert out["nan"] == "nan"
    assert out["tuple"] == [1, "a"]
    assert out["1"] == "int key"
    assert out["red"] == "enum key"


def test_cycles_and_bad_repr_get_placeholders() -> None:
    """Cycles and raising __repr__ become counted placeholders, never errors."""
    before = dict(_serialize.PLACEHOLDERS)
    a: list[Any] = [1]
    a.append(a)
    d: dict[str, Any] = {}
    d["self"] = d
    out = _serialize.to_jsonable({"a": a, "d": d, "bad": BadRepr(), "opaque": Opaque()})
    assert out["a"] == [1, "<cycle:list>"]
    assert out["d"] == {"self": "<cycle:dict>"}
    assert out["bad"] == "<repr_error:BadRepr>"
    assert out["opaque"] == "<Opaque>"
    assert _serialize.PLACEHOLDERS["cycle"] >= before.get("cycle", 0) + 2
    assert _serialize.PLACEHOLDERS["repr_error"] == before.get("repr_error", 0) + 1


def test_deep_nesting_is_bounded() -> None:
    """Absurdly deep structures stop at a depth placeholder."""
    v: list[Any] = []
    cur = v
    for _ in range(500):
        nxt: list[Any] = []
        cur.append(nxt)
        cur = nxt
    out = json.dumps(_serialize.to_jsonable(v))
    assert "<max_depth:list>" in out


def test_oversize_record_is_truncated_not_dropped() -> None:
    """A record over the cap is shortened with a marker and still written."""
    rec = {"schema": 1, "type": "call", "id": "x", "ts": 0.0, "input": {"big": "a" * 3_000_000},
           "output": "b" * 10, "metadata": {}}  # fmt: skip
    line = _serialize.encode_record(rec, 1024 * 1024)
    assert len(line) <= 1024 * 1024
    data = json.loads(line)
    assert data["metadata"]["logos_shift.truncated_bytes"] > 3_000_000
    assert "truncated" in data["input"]["big"]
    assert data["input"]["big"].startswith("aaaa")
    assert data["output"] == "b" * 10


def test_many_small_items_truncate() -> None:
    """Huge lists of tiny items also fit the cap."""
    rec = {"schema": 1, "type": "call", "id": "x", "ts": 0.0, "input": list(range(400_000)),
           "metadata": {}}  # fmt: skip
    line = _serialize.encode_record(rec, 64 * 1024)
    assert len(line) <= 64 * 1024
    assert json.loads(line)["metadata"]["logos_shift.truncated_bytes"] > 64 * 1024


def test_unserialisable_result_end_to_end() -> None:
    """A decorated function returning odd objects is still recorded."""
    with capture_records() as cap:

        @cap.client()
        def f() -> Any:
            return {"bad": BadRepr(), "gen": (i for i in range(2)), "model": Point(1, 2)}

        r = f()
        [rec] = cap.calls
    assert isinstance(r["bad"], BadRepr)
    assert rec["output"]["bad"] == "<repr_error:BadRepr>"
    assert rec["output"]["model"] == {"x": 1, "y": 2}
    assert rec["output"]["gen"].startswith("<generator object")


def test_capture_content_off_and_redact() -> None:
    """capture_content=False drops inputs/outputs; redact rewrites or drops records."""
    with capture_records(capture_content=False) as cap:

        @cap.client()
        def f(secret: str) -> str:
            return secret

        f("s3cret")
        [rec] = cap.calls
    assert rec["input"] is None
    assert rec["output"] is None

    def redact(r: dict[str, Any]) -> dict[str, Any] | None:
        if r.get("input", {}).get("drop"):
            return None
        r["input"] = {"secret": "***"}
        return r

    from logos_shift import LogosShift, MemorySink

    sink = MemorySink()
    ls = LogosShift(sink=sink, redact=redact)

    @ls()
    def g(secret: str = "", drop: bool = False) -> int:
        return 1

    g("s3cret")
    g(drop=True)
    assert ls.flush(5)
    recs = sink.records()
    assert [r["input"] for r in recs] == [{"secret": "***"}]
    assert ls.stats()["dropped_by_reason"] == {"redacted": 1}
    ls.shutdown()


@pytest.mark.parametrize("value", [float("inf"), -float("inf")])
def test_infinities(value: float) -> None:
    """Non-finite floats are written as strings (JSON has no Infinity)."""
    assert _serialize.to_jsonable(value) in ("inf", "-inf")
