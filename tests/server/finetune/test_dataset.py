"""Tests of the fine-tuning dataset builder on plain record dicts."""

from __future__ import annotations

import json
from typing import Any

import pytest

from logos_shift import export as _export
from logos_shift.server.finetune import dataset as db


def _call(i: int, question: str | None = None, **kw: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "schema": 1,
        "type": "call",
        "id": f"c{i}",
        "ts": f"2026-11-2{1 + i % 3}T10:00:00.000Z",
        "source": "openai.chat.completions",
        "provider": "openai",
        "response_id": f"chatcmpl-{i}",
        "input": {
            "model": "gpt-4o",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": question or f"question {i}"},
            ],
        },
        "output": {"choices": [{"message": {"role": "assistant", "content": f"answer {i}"}}]},
        "error": None,
    }
    rec.update(kw)
    return rec


def _ok(n: int) -> dict[str, dict[str, Any]]:
    return {f"c{i}": {"outcome": "success", "score": None} for i in range(n)}


def test_builds_splits_and_jsonl() -> None:
    """100 successful calls become valid JSONL split about 80/10/10 with no overlap."""
    calls = [_call(i) for i in range(100)]
    ds = db.build(calls, _ok(100))
    assert ds.counts["train"] + ds.counts["validation"] + ds.counts["test"] == 100
    assert 60 <= len(ds.train) <= 95
    assert ds.test
    lines = [json.loads(x) for x in ds.jsonl("train").decode().splitlines()]
    assert lines[0]["messages"][-1]["role"] == "assistant"
    train_inputs = {db.input_hash(x) for x in ds.train}
    assert not train_inputs & {db.input_hash(t["example"]) for t in ds.test}
    assert ds.test[0]["expected"]["role"] == "assistant"


def test_split_is_stable_across_rebuilds_and_order() -> None:
    """The same input lands in the same split whatever the order or the other calls."""
    calls = [_call(i) for i in range(60)]
    a = db.build(calls, _ok(60))
    b = db.build([*reversed(calls), _call(99)], {**_ok(60), "c99": {"outcome": "success"}})
    assert {t["call_id"] for t in a.test} <= {t["call_id"] for t in b.test}


def test_failures_and_unrated_are_excluded_and_scores_count() -> None:
    """Failures and calls without feedback are left out; score >= tau is accepted."""
    calls = [_call(i) for i in range(40)]
    fb: dict[str, dict[str, Any]] = {}
    for i in range(40):
        if i % 4 == 0:
            fb[f"c{i}"] = {"outcome": "failure", "score": 1.0}
        elif i % 4 == 1:
            fb[f"c{i}"] = {"outcome": "neutral", "score": 0.9}
        elif i % 4 == 2:
            fb[f"c{i}"] = {"outcome": "neutral", "score": 0.2}
    spec = db.DatasetSpec(min_score=0.8, min_examples=1, test_frac=0, validation_frac=0)
    ds = db.build(calls, fb, spec)
    assert ds.counts["selected"] == 10
    assert len(ds.train) == 10


def test_dedup_by_normalised_input() -> None:
    """Inputs differing only in whitespace are one example."""
    calls = [_call(i, question="What  is\tit?" if i % 2 else "What is it?") for i in range(20)]
    calls += [_call(100 + i) for i in range(20)]
    fb = {**_ok(20), **{f"c{100 + i}": {"outcome": "success"} for i in range(20)}}
    ds = db.build(calls, fb, db.DatasetSpec(min_examples=1))
    assert ds.counts["duplicates"] == 19


def test_time_window() -> None:
    """Only calls inside [since, until) are selected."""
    calls = [_call(i) for i in range(60)]
    since = 1795305600.0  # 2026-11-22T00:00Z: keeps the 22nd and 23rd
    ds = db.build(calls, _ok(60), db.DatasetSpec(since=since, min_examples=1))
    assert ds.counts["selected"] == 40


def test_too_small_dataset_is_rejected_with_counts() -> None:
    """Fewer than 10 training examples raises a DatasetError saying why."""
    with pytest.raises(db.DatasetError, match=r"only .* training examples") as err:
        db.build([_call(i) for i in range(5)], _ok(5))
    assert "5 with success feedback" in str(err.value)


def test_malformed_records_are_reported() -> None:
    """Records that are not chat calls or have bad roles are counted and named."""
    calls = [_call(i) for i in range(3)]
    calls[0]["input"]["messages"][1]["role"] = "wizard"
    calls[1]["output"] = {"not": "a chat response"}
    calls[2]["input"]["messages"] = [{"role": "user", "content": None}]
    with pytest.raises(db.DatasetError) as err:
        db.build(calls, _ok(3))
    text = str(err.value)
    assert "unrecognised role 'wizard'" in text
    assert "has no content" in text
    assert "1 not chat calls" in text


def test_tools_and_tool_calls_preserved() -> None:
    """Tool definitions and assistant tool calls survive conversion."""
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    calls = []
    for i in range(12):
        rec = _call(i)
        rec["input"]["tools"] = tools
        rec["output"] = {
            "choices": [
                {
                    "message": {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [
                            {
                                "id": f"t{i}",
                                "type": "function",
                                "function": {"name": "f", "arguments": "{}"},
                            }
                        ],
                    }
                }
            ]
        }
        calls.append(rec)
    ds = db.build(calls, _ok(12), db.DatasetSpec(test_frac=0, validation_frac=0))
    line = json.loads(ds.jsonl().decode().splitlines()[0])
    assert line["tools"][0]["function"]["name"] == "f"
    assert line["messages"][-1]["tool_calls"][0]["function"]["name"] == "f"


def test_validate_example_rules() -> None:
    """The cookbook checks: object, messages, roles, keys, assistant present, token limit."""
    assert db.validate_example([], 100) == ["not a JSON object"]
    assert db.validate_example({"messages": []}, 100) == ["missing messages list"]
    probs = db.validate_example({"messages": [{"role": "user", "content": "x", "foo": 1}]}, 100)
    assert any("unrecognised keys" in p for p in probs)
    assert "no assistant message" in probs
    big = {
        "messages": [{"role": "user", "content": "x" * 1000}, {"role": "assistant", "content": "y"}]
    }
    assert any("over the limit" in p for p in db.validate_example(big, 100))


def test_feedback_by_call_joins_by_response_id_latest_wins() -> None:
    """Feedback targeting a provider response id joins its call; the latest verdict wins."""
    recs = [
        _call(1),
        {
            "type": "feedback",
            "id": "f1",
            "ts": "2026-11-23T10:00:00.000Z",
            "target": "chatcmpl-1",
            "outcome": "failure",
        },
        {
            "type": "feedback",
            "id": "f2",
            "ts": "2026-11-23T11:00:00.000Z",
            "target": "c1",
            "outcome": "success",
            "score": 1.0,
        },
        {
            "type": "feedback",
            "id": "f3",
            "ts": "2026-11-23T11:00:00.000Z",
            "target": "unknown",
            "outcome": "success",
        },
    ]
    assert db.feedback_by_call(recs) == {"c1": {"outcome": "success", "score": 1.0}}


def test_prompt_hash_matches_answered_examples_of_the_same_input() -> None:
    """A failed call (error, no output) hashes like a good answer to the same input."""
    good = _call(1, question="  what is   2+2? ")
    failed = _call(2, question="what is 2+2?", output=None, error={"type": "E", "message": "m"})
    example = _export.to_openai_chat(good)
    assert example is not None
    assert db.prompt_hash(failed) == db.prompt_hash(good) == db.input_hash(example)
    assert db.prompt_hash(_call(3, question="what is 3+3?")) != db.prompt_hash(good)
    anthropic = {
        "type": "call",
        "source": "anthropic.messages",
        "provider": "anthropic",
        "input": {"system": "Be brief.", "messages": [{"role": "user", "content": "what is 2+2?"}]},
        "output": None,
        "error": {"type": "E", "message": "overloaded"},
    }
    assert db.prompt_hash(anthropic) == db.prompt_hash(good)
    assert db.prompt_hash({"type": "call", "source": "openai.embeddings", "input": {}}) is None


def test_hard_inputs_are_up_weighted_in_train_and_counted() -> None:
    """Good answers to hard inputs appear hard_weight times in train; the rest are reported."""
    calls = [_call(i) for i in range(100)]
    ds0 = db.build(calls, _ok(100))
    hard_in_train = [db.input_hash(x) for x in ds0.train[:5]]
    hard_in_test = [db.input_hash(t["example"]) for t in ds0.test[:1]]
    missing = db.prompt_hash(_call(500, question="never answered"))
    assert missing is not None
    hard = {*hard_in_train, *hard_in_test, missing}
    ds = db.build(calls, _ok(100), db.DatasetSpec(hard_weight=3), hard)
    assert ds.counts["hard_inputs"] == 7
    assert ds.counts["hard_answered"] == 6
    assert ds.counts["hard_in_train"] == 5
    assert ds.counts["hard_unanswered"] == 1
    assert ds.hard_unanswered == [missing]
    assert len(ds.train) == len(ds0.train) + 5 * 2
    lines = ds.jsonl("train").decode().splitlines()
    for h in hard_in_train:
        assert sum(1 for x in lines if db.input_hash(json.loads(x)) == h) == 3
    # The test split is unchanged: a hard input that hashes there is never trained on.
    assert [t["call_id"] for t in ds.test] == [t["call_id"] for t in ds0.test]
    assert any("1 of 7 inputs a rolled-back model failed on" in w for w in ds.warnings)


def test_hard_repeats_do_not_count_towards_the_minimum() -> None:
    """The minimum of examples counts distinct inputs, not a hard input's repeats."""
    calls = [_call(i) for i in range(14)]
    ds0 = db.build(calls, _ok(14), db.DatasetSpec(min_examples=1, test_frac=0, validation_frac=0))
    hard = {db.input_hash(x) for x in ds0.train}
    spec = db.DatasetSpec(min_examples=15, test_frac=0, validation_frac=0, hard_weight=2)
    with pytest.raises(db.DatasetError, match="only 14 training examples"):
        db.build(calls, _ok(14), spec, hard)
