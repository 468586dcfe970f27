"""Offline evaluation: the new model answers the held-out test split; a judge compares.

The default judge accepts an answer equal to the recorded one, as text (after
trimming) or as JSON (so key order and spacing do not matter), and tool calls
with the same names and JSON arguments.  Pass another ``judge`` (for example an
LLM comparing both answers) for open-ended outputs.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from logos_shift.server.outbound import AddressPolicy, http_client

__all__ = ["default_judge", "judge_test_split"]

Judge = Callable[[dict[str, Any], dict[str, Any]], bool]


def _norm(text: Any) -> Any:
    if not isinstance(text, str):
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text.strip()


def _calls(msg: dict[str, Any]) -> list[tuple[Any, Any]]:
    out = []
    for c in msg.get("tool_calls") or []:
        fn = c.get("function") or {}
        out.append((fn.get("name"), _norm(fn.get("arguments"))))
    return out


def default_judge(expected: dict[str, Any], actual: dict[str, Any]) -> bool:
    """Accept an answer equal to the recorded one (exact text or equal JSON).

    Args:
        expected: the recorded assistant message.
        actual: the new model's assistant message.

    Returns:
        Whether the new answer is as good (here: the same).
    """
    return _norm(expected.get("content")) == _norm(actual.get("content")) and _calls(
        expected
    ) == _calls(actual)


def judge_test_split(
    base_url: str | None,
    model: str,
    items: Sequence[dict[str, Any]],
    judge: Judge = default_judge,
    api_key: str | None = None,
    policy: AddressPolicy | None = None,
) -> tuple[int, int]:
    """Ask ``model`` every held-out input and count the answers the judge accepts.

    Args:
        base_url: the OpenAI-compatible endpoint serving the model (where it was trained).
        model: the fine-tuned model.
        items: ``{"input": request, "expected": assistant message}`` test items.
        judge: compares the expected and the new assistant message.
        api_key: the endpoint's key (that backend's own; no other key is ever used).
        policy: the address policy for a project-supplied endpoint (None: configured).

    Returns:
        ``(passed, total)``; a request that fails counts as not passed.
    """
    import openai

    passed = 0
    http = http_client(policy, timeout_s=60.0, openai_sdk=True)
    with openai.OpenAI(
        base_url=base_url, api_key=api_key or "unused", max_retries=1, timeout=60, http_client=http
    ) as client:
        for item in items:
            req = dict(item.get("input") or {})
            kwargs = {k: req[k] for k in ("messages", "tools", "tool_choice") if k in req}
            try:
                resp = client.chat.completions.create(model=model, **kwargs)
            except openai.OpenAIError:
                continue
            actual = resp.choices[0].message.model_dump(exclude_none=True)
            if judge(dict(item.get("expected") or {}), actual):
                passed += 1
    return passed, len(items)
