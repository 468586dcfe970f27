"""The client's record TypedDicts and the server's pydantic models describe the same records."""

from __future__ import annotations

import types
import typing
from typing import Any, Literal, Union

import pydantic
import pytest

from logos_shift._capture import record
from logos_shift.server.store import records as server
from logos_shift.testing import capture_records


def _shape(tp: Any) -> Any:
    """A comparable description of a type: TypedDicts and models as their fields."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _shape(typing.get_args(tp)[0])
    if origin in (Union, types.UnionType):
        return frozenset(_shape(a) for a in typing.get_args(tp))
    if origin is Literal:
        return ("literal", frozenset(typing.get_args(tp)))
    if origin is dict:
        return "dict"
    if typing.is_typeddict(tp) or (isinstance(tp, type) and issubclass(tp, pydantic.BaseModel)):
        return ("record", tuple(_fields(tp).items()))
    if tp is type(None):
        return "null"
    if tp is Any:
        return "any"
    return tp.__name__


def _fields(tp: Any) -> dict[str, Any]:
    if typing.is_typeddict(tp):
        return {k: _shape(v) for k, v in typing.get_type_hints(tp).items()}
    return {(f.alias or name): _shape(f.annotation) for name, f in tp.model_fields.items()}


@pytest.mark.parametrize(
    ("client", "model"),
    [(record.CallRecord, server.CallRecord), (record.FeedbackRecord, server.FeedbackRecord)],
)
def test_typeddict_matches_the_server_model_field_by_field(client: Any, model: Any) -> None:
    """Every field has the same name and type (sub-records included) on both sides."""
    mine, theirs = _fields(client), _fields(model)
    assert list(mine) == list(theirs)
    for name in mine:
        assert mine[name] == theirs[name], name


def test_field_order_is_the_typeddicts() -> None:
    """Records are written in the TypedDict's field order."""
    assert tuple(record.CallRecord.__annotations__) == record.CALL_FIELDS
    assert tuple(record.FeedbackRecord.__annotations__) == record.FEEDBACK_FIELDS
    with capture_records() as cap:

        @cap.client()
        def f() -> int:
            return 1

        f()
        cap.client.provide_feedback("x", "success")
        call, fb = cap.records
    assert tuple(call) == record.CALL_FIELDS
    assert tuple(fb) == record.FEEDBACK_FIELDS
    server.CallRecord.model_validate(call)
    server.FeedbackRecord.model_validate(fb)
