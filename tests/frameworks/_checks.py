"""What a right record looks like, checked the same way for every framework.

Pure helpers over the records read back from the local JSONL copy and the requests
the fake provider received; the per-framework tests only say what the framework
returned.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import re
from collections.abc import Callable
from typing import Any

from logos_shift.testing import RecordedRequest

INFERENCE_PATHS = ("/v1/chat/completions", "/v1/responses", "/v1/messages")
#: Strings a record must never hold: an object's default repr, the SDKs' sentinels,
#: the serialiser's own placeholders and the lazy output's failure marker.
PLACEHOLDER = re.compile(
    r"<[^<>\"]*? object at 0x[0-9a-fA-F]+>|\bNOT_GIVEN\b|\bNotGiven\b|\bOmit\b"
    r"|<(?:cycle|repr_error|max_depth|key_error):[^>]*>|<unprintable |output_unavailable"
)
_ID_PREFIXES = ("chatcmpl-", "msg_", "resp_", "toolu_", "call_", "fc_", "req_", "run-", "lc_run")
_VOLATILE_KEYS = frozenset(
    {
        "id", "created", "created_at", "timestamp", "response_id", "provider_response_id",
        "request_id", "tool_call_id", "call_id", "run_id", "trace_id", "span_id",
        "duration", "latency", "time", "elapsed",
    }
)  # fmt: skip


def norm(value: Any, depth: int = 0) -> Any:
    """A framework result as plain data with per-call ids and clocks blanked out.

    Two runs of the same scenario (plain, then patched) must give equal values. Nothing
    else is blanked: a ``logos_shift_id`` that leaked into a result makes them differ.
    """
    if depth > 40:
        return "<deep>"
    if hasattr(value, "model_dump") and not isinstance(value, type):
        try:
            dumped = value.model_dump(mode="json")
        except Exception:
            dumped = value.model_dump()
        return [type(value).__name__, norm(dumped, depth + 1)]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: getattr(value, f.name, None) for f in dataclasses.fields(value)}
        return [type(value).__name__, norm(fields, depth + 1)]
    if isinstance(value, dict):
        return {
            str(k): "<x>" if str(k) in _VOLATILE_KEYS else norm(v, depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [norm(v, depth + 1) for v in value]
    if isinstance(value, str):
        return "<id>" if value.startswith(_ID_PREFIXES) else value
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (int, float, bool)) or value is None:
        return value
    if hasattr(value, "isoformat"):
        return "<time>"
    return type(value).__name__


def placeholders(tree: Any, path: str = "$") -> list[str]:
    """Every key or string in ``tree`` that holds a placeholder, as ``"path: text"``."""
    found: list[str] = []
    if isinstance(tree, dict):
        for key, value in tree.items():
            if PLACEHOLDER.search(str(key)):
                found.append(f"{path} (key {key!r})")
            found.extend(placeholders(value, f"{path}.{key}"))
    elif isinstance(tree, list):
        for i, value in enumerate(tree):
            found.extend(placeholders(value, f"{path}[{i}]"))
    elif isinstance(tree, str) and PLACEHOLDER.search(tree):
        found.append(f"{path}: {tree[:160]!r}")
    return found


def inference(requests: list[RecordedRequest]) -> list[RecordedRequest]:
    """The model requests among ``requests`` (no model lists, no token counting)."""
    return [r for r in requests if r.method == "POST" and r.path in INFERENCE_PATHS]


# -- reading a record's output, whatever the API ----------------------------


def output_text(record: dict[str, Any]) -> str | None:
    """The assistant text of a call record's output (chat, responses or messages shape)."""
    out = record.get("output")
    if not isinstance(out, dict):
        return None
    if isinstance(out.get("choices"), list):
        if not out["choices"]:
            return None
        content = (out["choices"][0].get("message") or {}).get("content")
        return content if isinstance(content, str) else None
    if out.get("object") == "response" or "output" in out:
        texts = [
            part.get("text", "")
            for item in out.get("output") or []
            if isinstance(item, dict) and item.get("type") == "message"
            for part in item.get("content") or []
            if isinstance(part, dict) and part.get("type") == "output_text"
        ]
        return "".join(texts) if texts else out.get("output_text")
    if isinstance(out.get("content"), list):
        texts = [b.get("text", "") for b in out["content"] if b.get("type") == "text"]
        return "".join(texts) if texts else None
    return None


def output_tool_calls(record: dict[str, Any]) -> list[tuple[str, Any]]:
    """``[(name, arguments as data)]`` of a call record's output, in order."""
    out = record.get("output")
    if not isinstance(out, dict):
        return []
    calls: list[tuple[str, Any]] = []
    if isinstance(out.get("choices"), list) and out["choices"]:
        for tc in (out["choices"][0].get("message") or {}).get("tool_calls") or []:
            fn = tc.get("function") or {}
            calls.append((fn.get("name"), json.loads(fn.get("arguments") or "{}")))
    elif out.get("object") == "response":
        for item in out.get("output") or []:
            if item.get("type") == "function_call":
                calls.append((item.get("name"), json.loads(item.get("arguments") or "{}")))
    elif isinstance(out.get("content"), list):
        for block in out["content"]:
            if block.get("type") == "tool_use":
                calls.append((block.get("name"), block.get("input")))
    return calls


# -- the record checks --------------------------------------------------------

#: Request arguments the SDKs send outside the JSON body (headers).
_NOT_IN_BODY = frozenset({"betas"})


def check_call_record(
    rec: dict[str, Any],
    req: RecordedRequest | None,
    *,
    stream: bool,
    failed: bool = False,
) -> None:
    """Assert what every call record must hold, against the request that was sent.

    Args:
        rec: the call record.
        req: the request the fake received for it (the last attempt's).
        stream: whether the framework streamed it.
        failed: whether the call ended in an error.
    """
    assert rec["type"] == "call"
    assert rec["schema"] == 1
    assert not placeholders(rec), placeholders(rec)
    assert rec["provider"] in ("openai", "anthropic")
    assert isinstance(rec["input"], dict)
    if req is not None:
        body = req.body
        assert rec["requested_model"] == body["model"]
        extra = set(rec["input"]) - set(body) - _NOT_IN_BODY
        assert not extra, f"recorded arguments the SDK did not send: {sorted(extra)}"
        for key in ("messages", "input", "system", "tools"):
            if key in body and key in rec["input"] and isinstance(body[key], (str, list)):
                assert json.dumps(rec["input"][key], sort_keys=True) == json.dumps(
                    body[key], sort_keys=True
                ), f"input.{key} differs from what was sent"
    if failed:
        assert rec["error"] is not None
        assert rec["error"]["type"]
    else:
        assert rec["error"] is None, rec["error"]
        assert isinstance(rec["output"], dict)
        assert isinstance(rec["response_id"], str)
        assert rec["response_id"].startswith(("chatcmpl-", "msg_", "resp_"))
        assert rec["served_model"] == rec["requested_model"]
    if stream:
        assert rec["stream"] is not None, "a streamed call recorded without stream status"
        want = "error" if failed else "completed"
        assert rec["stream"]["status"] == want, rec["stream"]
        if not failed:
            assert rec["stream"]["chunks"] > 0
    else:
        assert rec["stream"] is None


def check_export(examples: list[dict[str, Any]]) -> None:
    """Assert each exported fine-tuning example is valid OpenAI chat fine-tuning data."""
    for ex in examples:
        assert not placeholders(ex), placeholders(ex)
        messages = ex["messages"]
        assert messages
        assert messages[-1]["role"] == "assistant"
        for m in messages:
            assert m["role"] in ("system", "user", "assistant", "tool"), m
            content = m.get("content")
            assert content is None or isinstance(content, str), m
            if m["role"] == "assistant":
                assert content is not None or m.get("tool_calls"), m
                for tc in m.get("tool_calls") or []:
                    assert tc["type"] == "function"
                    assert tc["function"]["name"]
                    json.loads(tc["function"]["arguments"])
            elif m["role"] == "tool":
                assert m.get("tool_call_id")
            else:
                assert isinstance(content, str), m
                assert content, m
        for tool in ex.get("tools") or []:
            assert tool["type"] == "function"
            assert tool["function"]["name"]


Scenario = Callable[[], Any]
