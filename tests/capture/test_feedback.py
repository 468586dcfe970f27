"""Feedback records: validation at the call site, everything else forgiving."""

from __future__ import annotations

from typing import Any

import pytest

import logos_shift
from logos_shift.testing import capture_records


@pytest.mark.parametrize("bad", ["", "   ", None, 123, b"id"])
def test_bad_target_raises_value_error(bad: Any) -> None:
    """An empty or non-string id is a programming error."""
    with capture_records() as cap:
        with pytest.raises(ValueError, match="non-empty string id"):
            cap.client.provide_feedback(bad, "success")
        with pytest.raises(ValueError):
            logos_shift.provide_feedback(bad, "success")


def test_feedback_record_shape() -> None:
    """Feedback by logos id or provider id produces the schema's record."""
    with capture_records() as cap:

        @cap.client()
        def f() -> dict[str, int]:
            return {"a": 1}

        r = f()
        fid = cap.client.provide_feedback(r["logos_shift_id"], "success", score=0.9,
                                          comment="good", metadata={"by": "qa"})  # fmt: skip
        logos_shift.provide_feedback("chatcmpl-abc", False)
        fb1, fb2 = cap.feedback
    assert fb1 == {
        "schema": 1, "type": "feedback", "id": fid, "ts": fb1["ts"], "target": r["logos_shift_id"],
        "outcome": "success", "score": 0.9, "comment": "good", "metadata": {"by": "qa"},
    }  # fmt: skip
    assert fb2["target"] == "chatcmpl-abc"
    assert fb2["outcome"] == "failure"


def test_bad_outcome_and_score_do_not_raise(caplog: pytest.LogCaptureFixture) -> None:
    """An unknown outcome is logged and counted; a bad score becomes null."""
    with capture_records() as cap:
        assert cap.client.provide_feedback("msg_1", "great") is None
        assert cap.client.provide_feedback("msg_1", "neutral", score="high") is not None  # type: ignore[arg-type]
        [fb] = cap.feedback
        assert fb["score"] is None
        assert cap.client.stats()["dropped_by_reason"]["invalid_feedback"] == 1
    assert "not one of" in caplog.text


def test_module_feedback_without_instance_is_quiet() -> None:
    """provide_feedback() with no instance logs and returns None."""
    assert logos_shift.get_client() is None
    assert logos_shift.provide_feedback("msg_1", "success") is None
