"""Build a fine-tuning dataset from captured call records (plain dicts, no DB).

select (feedback ``success`` or score >= ``min_score``; failures never; a time
window) → de-duplicate by normalised input hash → convert to OpenAI chat
fine-tuning lines (tools and tool calls kept, via :mod:`logos_shift.export`) →
validate (roles, an assistant message, size and token limits, at least
``min_examples``) → split train / validation / test by a stable hash of the
input, so an input lands in the same split on every rebuild and the test split
is never trained on.

Hard inputs (the inputs a rolled-back model failed on, see
:func:`prompt_hash`) are passed to :func:`build`: their good answers (from
control, or any call with success feedback) are repeated ``hard_weight`` times
in the training split, and the counts say how many still lack a good answer.

A dataset that is too small or malformed raises :class:`DatasetError` listing
every problem, before any upload or job.
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from logos_shift import export as _export
from logos_shift.server.store.records import parse_ts

__all__ = [
    "BuiltDataset",
    "DatasetError",
    "DatasetSpec",
    "build",
    "feedback_by_call",
    "input_hash",
    "prompt_hash",
    "validate_example",
]

_ROLES = {"system", "user", "assistant", "tool", "developer"}
_MSG_KEYS = {"role", "content", "name", "tool_calls", "tool_call_id", "weight", "function_call"}


class DatasetError(ValueError):
    """The dataset cannot be used for fine-tuning.

    Attributes:
        problems: every problem found, one sentence each.
    """

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("dataset rejected: " + "; ".join(self.problems[:10]))


@dataclass(frozen=True)
class DatasetSpec:
    """How to select, split and limit a dataset.

    Attributes:
        min_score: also accept calls whose feedback score is at least this (tau).
        since: only calls at or after this Unix time.
        until: only calls before this Unix time.
        validation_frac: share of inputs in the validation split.
        test_frac: share of inputs in the held-out test split.
        min_examples: fewest training examples accepted (OpenAI's minimum is 10).
        max_example_tokens: most (estimated) tokens per example.
        max_file_bytes: largest training file.
        salt: salt of the split hash (change it to re-draw the split).
        hard_weight: how many times a hard input's good answer appears in the
            training split (1 = no up-weighting).
    """

    min_score: float | None = None
    since: float | None = None
    until: float | None = None
    validation_frac: float = 0.1
    test_frac: float = 0.1
    min_examples: int = 10
    max_example_tokens: int = 65_536
    max_file_bytes: int = 512 * 1024 * 1024
    salt: str = "logos-shift"
    hard_weight: int = 2


@dataclass
class BuiltDataset:
    """The result of :func:`build`.

    Attributes:
        train: training examples (OpenAI chat lines).
        validation: validation examples.
        test: held-out examples as ``{"call_id", "example", "input", "expected"}``
            (the request and the recorded output, for offline evaluation).
        counts: how many calls were seen, selected, duplicates, rejected, per split
            (``train`` counts lines, a hard input's repeats included), and the
            ``hard_*`` counts of :func:`build`.
        warnings: non-fatal remarks (e.g. fewer than 50 examples).
        hard_unanswered: the hard inputs (hashes) no selected call answered well.
    """

    train: list[dict[str, Any]] = field(default_factory=list)
    validation: list[dict[str, Any]] = field(default_factory=list)
    test: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    hard_unanswered: list[str] = field(default_factory=list)

    def jsonl(self, split: str = "train") -> bytes:
        """Return a split as JSONL bytes, ready for ``files.create(purpose="fine-tune")``.

        Args:
            split: ``train``, ``validation`` or ``test``.

        Returns:
            UTF-8 JSONL.
        """
        rows = self.test if split == "test" else getattr(self, split)
        items = [r["example"] for r in rows] if split == "test" else rows
        return "".join(_dumps(x) + "\n" for x in items).encode("utf-8")


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def _normalise(value: Any) -> Any:
    if isinstance(value, str):
        return " ".join(unicodedata.normalize("NFC", value).split())
    if isinstance(value, dict):
        return {k: _normalise(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalise(v) for v in value]
    return value


def input_hash(example: Mapping[str, Any]) -> str:
    """Hash the input part of an example (all messages but the final answer, and tools).

    Whitespace runs and Unicode forms are normalised, so cosmetic differences
    do not defeat de-duplication.

    Args:
        example: an OpenAI chat line (``messages`` ending with the assistant's answer).

    Returns:
        A hex SHA-256 digest.
    """
    msgs = list(example.get("messages") or [])
    prompt = msgs[:-1] if msgs and msgs[-1].get("role") == "assistant" else msgs
    key = {"messages": _normalise(prompt), "tools": _normalise(example.get("tools"))}
    return hashlib.sha256(_dumps(key).encode("utf-8")).hexdigest()


_PLACEHOLDER_OUTPUTS = (
    {"choices": [{"message": {"role": "assistant", "content": ""}}]},
    {"role": "assistant", "content": [{"type": "text", "text": ""}]},
)


def prompt_hash(record: Mapping[str, Any]) -> str | None:
    """Hash a call record's input the way :func:`input_hash` hashes an example's.

    Works for failed calls too (no output, or an error): the record is
    converted with a placeholder answer, which the hash ignores.  So the input
    a model failed on matches the examples that answer the same input.

    Args:
        record: a ``call`` record.

    Returns:
        The hex digest, or None when the input is not a chat conversation.
    """
    for placeholder in _PLACEHOLDER_OUTPUTS:
        rec = {**record, "error": None, "output": placeholder}
        example = _export.to_openai_chat(rec)
        if example is not None:
            return input_hash(example)
    return None


def validate_example(example: Any, max_tokens: int) -> list[str]:
    """Check one line against the OpenAI cookbook's format rules.

    Args:
        example: the candidate line.
        max_tokens: the per-example token limit (estimated as characters / 4).

    Returns:
        Problems found (empty when valid).
    """
    if not isinstance(example, dict):
        return ["not a JSON object"]
    msgs = example.get("messages")
    if not isinstance(msgs, list) or not msgs:
        return ["missing messages list"]
    problems: list[str] = []
    for i, m in enumerate(msgs):
        if not isinstance(m, dict) or "role" not in m:
            problems.append(f"message {i} has no role")
            continue
        if m["role"] not in _ROLES:
            problems.append(f"message {i} has unrecognised role {m['role']!r}")
        unknown = set(m) - _MSG_KEYS
        if unknown:
            problems.append(f"message {i} has unrecognised keys {sorted(unknown)}")
        if m.get("content") is None and not m.get("tool_calls") and not m.get("function_call"):
            problems.append(f"message {i} ({m['role']}) has no content")
    if not any(isinstance(m, dict) and m.get("role") == "assistant" for m in msgs):
        problems.append("no assistant message")
    tokens = len(_dumps(example)) // 4
    if tokens > max_tokens:
        problems.append(f"about {tokens} tokens, over the limit of {max_tokens}")
    return problems


def feedback_by_call(records: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Join feedback records onto call ids (latest feedback wins).

    Args:
        records: call and feedback records; feedback ``target`` may be the call's
            id or its provider ``response_id``.

    Returns:
        ``{call_id: {"outcome", "score"}}``.
    """
    rows = list(records)
    alias = {}
    for r in rows:
        if r.get("type") == "call":
            alias[str(r.get("id"))] = str(r.get("id"))
            if r.get("response_id"):
                alias[str(r["response_id"])] = str(r.get("id"))
    latest: dict[str, tuple[str, dict[str, Any]]] = {}
    for r in rows:
        if r.get("type") != "feedback":
            continue
        call_id = alias.get(str(r.get("target")))
        if call_id is None:
            continue
        key = f"{r.get('ts', '')}|{r.get('id', '')}"
        if call_id not in latest or key > latest[call_id][0]:
            latest[call_id] = (key, {"outcome": r.get("outcome"), "score": r.get("score")})
    return {k: v for k, (_, v) in latest.items()}


def _selected(fb: Mapping[str, Any] | None, min_score: float | None) -> bool:
    if not fb or fb.get("outcome") == "failure":
        return False
    if fb.get("outcome") == "success":
        return True
    score = fb.get("score")
    return min_score is not None and isinstance(score, (int, float)) and score >= min_score


def _in_window(record: Mapping[str, Any], spec: DatasetSpec) -> bool:
    if spec.since is None and spec.until is None:
        return True
    ts = record.get("ts")
    try:
        t = float(ts) if isinstance(ts, (int, float)) else parse_ts(str(ts))
    except ValueError:
        return False
    return (spec.since is None or t >= spec.since) and (spec.until is None or t < spec.until)


def _split(h: str, spec: DatasetSpec) -> str:
    u = int(hashlib.sha256(f"{spec.salt}:{h}".encode()).hexdigest()[:12], 16) / 16**12
    if u < spec.test_frac:
        return "test"
    if u < spec.test_frac + spec.validation_frac:
        return "validation"
    return "train"


def build(
    calls: Iterable[Mapping[str, Any]],
    feedback: Mapping[str, Mapping[str, Any]],
    spec: DatasetSpec | None = None,
    hard: Collection[str] = (),
) -> BuiltDataset:
    """Select, de-duplicate, convert, validate and split calls into a dataset.

    Args:
        calls: call records (DESIGN.md "Records").
        feedback: ``{call_id: {"outcome", "score"}}`` (see :func:`feedback_by_call`).
        spec: selection and limits (defaults: success only, 80/10/10).
        hard: input hashes (:func:`prompt_hash`) a previous model failed on; a
            good answer to one is repeated ``spec.hard_weight`` times in train.
            Counts ``hard_inputs``, ``hard_answered`` (a good answer is in the
            dataset, any split), ``hard_in_train`` and ``hard_unanswered``.

    Returns:
        The dataset.

    Raises:
        DatasetError: fewer than ``min_examples`` usable training examples, or a
            training file over ``max_file_bytes``; every problem is listed.
    """
    spec = spec or DatasetSpec()
    out = BuiltDataset()
    c = dict.fromkeys(("calls", "selected", "duplicates", "invalid", "unconvertible"), 0)
    seen: set[str] = set()
    hard_set = set(hard)
    hard_train = 0
    problems: list[str] = []
    for rec in calls:
        c["calls"] += 1
        cid = str(rec.get("id"))
        if rec.get("type", "call") != "call" or not _in_window(rec, spec):
            continue
        if not _selected(feedback.get(cid), spec.min_score) or rec.get("error") is not None:
            continue
        c["selected"] += 1
        example = _export.to_openai_chat(dict(rec))
        if example is None:
            c["unconvertible"] += 1
            continue
        bad = validate_example(example, spec.max_example_tokens)
        if bad:
            c["invalid"] += 1
            if len(problems) < 20:
                problems.append(f"call {cid}: " + ", ".join(bad))
            continue
        h = input_hash(example)
        if h in seen:
            c["duplicates"] += 1
            continue
        seen.add(h)
        split = _split(h, spec)
        if split == "test":
            out.test.append(
                {"call_id": cid, "example": example, "input": rec.get("input"),
                 "expected": example["messages"][-1]}
            )  # fmt: skip
        elif split == "train" and h in hard_set:
            hard_train += 1
            out.train.extend(example for _ in range(max(1, spec.hard_weight)))
        else:
            getattr(out, split).append(example)
    answered = len(hard_set & seen)
    distinct_train = len(out.train) - hard_train * (max(1, spec.hard_weight) - 1)
    out.hard_unanswered = sorted(hard_set - seen)
    c.update(train=len(out.train), validation=len(out.validation), test=len(out.test))
    c.update(hard_inputs=len(hard_set), hard_answered=answered, hard_in_train=hard_train,
             hard_unanswered=len(out.hard_unanswered))  # fmt: skip
    out.counts = c
    fatal: list[str] = []
    if c["calls"] == 0:
        fatal.append(
            "no calls of this dataset in the time range asked for (since/until)"
            if spec.since is not None or spec.until is not None
            else "the dataset has no calls"
        )
    elif distinct_train < spec.min_examples:
        fatal.append(
            f"only {distinct_train} training examples (need at least {spec.min_examples}): "
            f"{c['calls']} calls seen, {c['selected']} with success feedback, "
            f"{c['duplicates']} duplicates, {c['invalid']} invalid, "
            f"{c['unconvertible']} not chat calls, {len(out.validation) + len(out.test)} held out"
        )
    size = len(out.jsonl("train"))
    if size > spec.max_file_bytes:
        fatal.append(f"training file is {size} bytes, over the limit of {spec.max_file_bytes}")
    if fatal:
        raise DatasetError(fatal + problems)
    out.warnings.extend(problems)
    if out.hard_unanswered:
        out.warnings.append(
            f"{len(out.hard_unanswered)} of {len(hard_set)} inputs a rolled-back model failed on"
            " have no successful answer yet (give feedback on control's answers to them)"
        )
    if distinct_train < 50:
        out.warnings.append(f"{distinct_train} training examples; gains usually start at 50-100")
    return out
