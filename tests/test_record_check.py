"""The whole-suite record check (tests/conftest.py) catches object reprs in any record."""

from __future__ import annotations

from logos_shift.testing import capture_records
from tests import conftest


class _Opaque:
    """An object with only the default repr."""


def test_object_repr_in_a_record_is_found_with_its_field() -> None:
    """A record holding ``<… object at 0x…>`` is reported with the field that holds it."""
    with capture_records() as cap:

        @cap.client(dataset="check")
        def f(x: object) -> dict[str, bool]:
            return {"ok": True}

        f(_Opaque())
        assert len(cap.calls) == 1
    found = conftest._REPR_CHECK.take()  # taken here, so this test itself passes
    assert len(found) == 1
    assert "$.input.x: <" in found[0]
    assert "_Opaque object at 0x" in found[0]


def test_a_custom_repr_is_not_an_object_repr() -> None:
    """Strings that merely look similar are left alone; a record of plain data passes."""
    assert conftest.placeholder_fields({"a": "<b at 0x1>", "c": ["object at 0x1"]}) == []
    assert conftest.placeholder_fields({"k": ["<x.Y object at 0xdeadbeef>"]}) == [
        "$.k[0]: <x.Y object at 0xdeadbeef>"
    ]
