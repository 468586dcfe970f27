"""Turn captured call records into fine-tuning data (stdlib only).

Shared by the server's export endpoint and ``logos-shift export --from``, so
the local JSONL copy converts exactly like the server's data (no lock-in).

``to_openai_chat`` produces one line of OpenAI's chat fine-tuning format,
``{"messages": [...], "tools": [...]}``, from an OpenAI chat-completions or an
Anthropic messages record: the request's messages (Anthropic's ``system``,
``tool_use`` and ``tool_result`` blocks mapped onto OpenAI roles) followed by
the assistant message of the response, tool calls included.  Records that
failed, have no output, or carry content the format cannot hold (images)
give None.

``to_gemini`` produces one line of Gemini's (Vertex AI) tuning format,
``{"systemInstruction": {...}, "contents": [...]}``, from a google-genai
record; google-genai records also convert to the chat format (text only).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import IO, Any

FORMATS: tuple[str, ...] = ("raw", "openai-chat", "gemini")
_MESSAGE_KEYS = ("role", "content", "name", "tool_calls", "tool_call_id")


def _oa_message(msg: Any) -> dict[str, Any] | None:
    if not isinstance(msg, dict) or not isinstance(msg.get("role"), str):
        return None
    out = {k: msg[k] for k in _MESSAGE_KEYS if msg.get(k) is not None}
    if msg["role"] == "assistant" and "content" not in out:
        out["content"] = None
    if "tool_calls" in out:
        calls = []
        for call in out["tool_calls"]:
            if not isinstance(call, dict) or not isinstance(call.get("function"), dict):
                return None
            fn = call["function"]
            calls.append(
                {
                    "id": call.get("id"),
                    "type": "function",
                    "function": {"name": fn.get("name"), "arguments": fn.get("arguments") or ""},
                }
            )
        out["tool_calls"] = calls
    return out


def _from_openai(inp: dict[str, Any], out: Any) -> dict[str, Any] | None:
    messages = [_oa_message(m) for m in inp.get("messages") or []]
    if not messages or any(m is None for m in messages):
        return None
    reply: Any = None
    if isinstance(out, dict) and isinstance(out.get("choices"), list) and out["choices"]:
        choice = out["choices"][0]
        reply = choice.get("message") if isinstance(choice, dict) else None
    elif isinstance(out, dict) and out.get("role") == "assistant":
        reply = out
    assistant = _oa_message(reply)
    if assistant is None or assistant["role"] != "assistant":
        return None
    result: dict[str, Any] = {"messages": [*messages, assistant]}
    tools = inp.get("tools")
    if isinstance(tools, list) and tools:
        result["tools"] = tools
    return result


def _anthropic_text(content: Any) -> str | None:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for block in content:
            if not isinstance(block, dict) or block.get("type") != "text":
                return None
            parts.append(str(block.get("text", "")))
        return "".join(parts)
    return None


def _anthropic_message(msg: Any) -> list[dict[str, Any]] | None:
    if not isinstance(msg, dict) or msg.get("role") not in ("user", "assistant"):
        return None
    content = msg.get("content")
    if isinstance(content, str):
        return [{"role": msg["role"], "content": content}]
    if not isinstance(content, list):
        return None
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    tool_msgs: list[dict[str, Any]] = []
    for block in content:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            texts.append(str(block.get("text", "")))
        elif kind == "tool_use":
            calls.append(
                {
                    "id": block.get("id"),
                    "type": "function",
                    "function": {
                        "name": block.get("name"),
                        "arguments": json.dumps(block.get("input") or {}, separators=(",", ":")),
                    },
                }
            )
        elif kind == "tool_result":
            text = _anthropic_text(block.get("content", ""))
            if text is None:
                return None
            tool_msgs.append(
                {"role": "tool", "tool_call_id": block.get("tool_use_id"), "content": text}
            )
        elif kind in ("thinking", "redacted_thinking"):
            continue  # not representable in the chat format; the answer still is
        else:
            return None
    out: list[dict[str, Any]] = list(tool_msgs)
    if msg["role"] == "assistant":
        reply: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None}
        if calls:
            reply["tool_calls"] = calls
        out.append(reply)
    elif texts:
        out.append({"role": "user", "content": "".join(texts)})
    return out


def _from_anthropic(inp: dict[str, Any], out: Any) -> dict[str, Any] | None:
    messages: list[dict[str, Any]] = []
    if inp.get("system") is not None:
        system = _anthropic_text(inp["system"])
        if system is None:
            return None
        messages.append({"role": "system", "content": system})
    for msg in inp.get("messages") or []:
        converted = _anthropic_message(msg)
        if converted is None:
            return None
        messages.extend(converted)
    reply = _anthropic_message({"role": "assistant", "content": (out or {}).get("content")})
    if not messages or not reply:
        return None
    result: dict[str, Any] = {"messages": [*messages, *reply]}
    tools = inp.get("tools")
    if isinstance(tools, list) and tools:
        converted_tools = []
        for tool in tools:
            if not isinstance(tool, dict) or "input_schema" not in tool:
                return None  # server tools (web search, …) have no chat equivalent
            fn: dict[str, Any] = {"name": tool.get("name"), "parameters": tool["input_schema"]}
            if tool.get("description"):
                fn["description"] = tool["description"]
            converted_tools.append({"type": "function", "function": fn})
        result["tools"] = converted_tools
    return result


def _gemini_content(value: Any, role: str = "user") -> dict[str, Any] | None:
    """One ``{role, parts}`` content from what google-genai accepts for one turn."""
    if isinstance(value, str):
        return {"role": role, "parts": [{"text": value}]}
    if isinstance(value, dict) and isinstance(value.get("parts"), list):
        parts = [p for p in value["parts"] if isinstance(p, dict) and not p.get("thought")]
        if not parts or any(set(p) - {"text"} for p in parts):
            return None  # function calls, files, images: not in the text formats
        return {"role": value.get("role") or role, "parts": [{"text": p["text"]} for p in parts]}
    return None


def _gemini_contents(contents: Any) -> list[dict[str, Any]] | None:
    if isinstance(contents, (str, dict)):
        one = _gemini_content(contents)
        return None if one is None else [one]
    if not isinstance(contents, list) or not contents:
        return None
    if all(isinstance(c, str) for c in contents):  # a list of strings is one user turn
        return [{"role": "user", "parts": [{"text": c} for c in contents]}]
    out = []
    for c in contents:
        one = _gemini_content(c)
        if one is None:
            return None
        out.append(one)
    return out


def to_gemini(record: dict[str, Any]) -> dict[str, Any] | None:
    """Convert one google-genai call record to a Gemini tuning example.

    Args:
        record: a ``call`` record of ``google_genai.generate_content``.

    Returns:
        ``{"systemInstruction"?: {"role": "system", "parts"}, "contents": [...]}``
        ending with the model's reply, or None when the record failed or holds
        more than text (function calls, files).

    Example:
        >>> reply = {"content": {"role": "model", "parts": [{"text": "yo"}]}}
        >>> to_gemini({"source": "google_genai.generate_content", "error": None,
        ...     "input": {"contents": "hi"}, "output": {"candidates": [reply]}})["contents"][0]
        {'role': 'user', 'parts': [{'text': 'hi'}]}
    """
    if record.get("error") is not None:
        return None
    inp, out = record.get("input"), record.get("output")
    if not isinstance(inp, dict) or not isinstance(out, dict):
        return None
    if not str(record.get("source") or "").startswith("google_genai.generate_content"):
        return None
    contents = _gemini_contents(inp.get("contents"))
    candidates = out.get("candidates")
    if contents is None or not isinstance(candidates, list) or not candidates:
        return None
    reply = _gemini_content((candidates[0] or {}).get("content"), "model")
    if reply is None:
        return None
    result: dict[str, Any] = {}
    system = (inp.get("config") or {}).get("system_instruction")
    if system is not None:
        sys_content = _gemini_content(system, "system")
        if sys_content is None:
            return None
        result["systemInstruction"] = {"role": "system", "parts": sys_content["parts"]}
    result["contents"] = [*contents, reply]
    return result


def _from_gemini(record: dict[str, Any]) -> dict[str, Any] | None:
    example = to_gemini(record)
    if example is None:
        return None
    messages: list[dict[str, Any]] = []
    if "systemInstruction" in example:
        text = "".join(p["text"] for p in example["systemInstruction"]["parts"])
        messages.append({"role": "system", "content": text})
    for c in example["contents"]:
        role = "assistant" if c["role"] == "model" else "user"
        messages.append({"role": role, "content": "".join(p["text"] for p in c["parts"])})
    return {"messages": messages}


def to_openai_chat(record: dict[str, Any]) -> dict[str, Any] | None:
    """Convert one call record to an OpenAI chat fine-tuning example.

    Args:
        record: a ``call`` record (see the README, "What is captured").

    Returns:
        ``{"messages": [...], "tools": [...]}`` (``tools`` only when the call
        had tools), or None when the record is not a successful chat call.

    Example:
        >>> to_openai_chat({"source": "openai.chat.completions", "error": None,
        ...     "input": {"messages": [{"role": "user", "content": "hi"}]},
        ...     "output": {"choices": [{"message": {"role": "assistant", "content": "yo"}}]}})
        {'messages': [{'role': 'user', 'content': 'hi'}, {'role': 'assistant', 'content': 'yo'}]}
    """
    if record.get("error") is not None:
        return None
    inp, out = record.get("input"), record.get("output")
    if not isinstance(inp, dict) or not isinstance(out, dict):
        return None
    source = str(record.get("source") or "")
    provider = record.get("provider")
    if source.startswith("google_genai."):
        return _from_gemini(record)
    if source.startswith("anthropic.messages") or (
        provider == "anthropic" and isinstance(out.get("content"), list)
    ):
        return _from_anthropic(inp, out)
    if source.startswith("openai.chat") or "choices" in out:
        return _from_openai(inp, out)
    return None


def accepts(
    outcome: str | None, score: float | None, want: str | None, min_score: float | None
) -> bool:
    """Apply the export filters to a call's feedback summary.

    Args:
        outcome: the call's latest feedback outcome (None: no feedback).
        score: the latest feedback's score.
        want: required outcome, or None for any.
        min_score: minimum score, or None; calls without a score fail it.

    Returns:
        Whether the call is exported.
    """
    if want is not None and outcome != want:
        return False
    return min_score is None or (score is not None and score >= min_score)


def _newer(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return (str(a.get("ts", "")), str(a.get("id", ""))) > (
        str(b.get("ts", "")),
        str(b.get("id", "")),
    )


def _records(lines: Iterable[str], bad: list[int]) -> Iterator[dict[str, Any]]:
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            bad.append(n)
            continue
        if isinstance(rec, dict):
            yield rec
        else:
            bad.append(n)


def export_lines(
    lines: Iterable[str],
    fmt: str = "openai-chat",
    outcome: str | None = None,
    min_score: float | None = None,
    out: IO[str] | None = None,
) -> tuple[list[str], dict[str, int]]:
    """Export a local JSONL copy: join its feedback, filter, convert.

    Feedback joins a call when its ``target`` is the call's id or provider
    response id; the latest feedback (by ts, then id) decides the outcome.

    Args:
        lines: the lines of the JSONL copy (read twice, so pass a list or a re-iterable).
        fmt: ``"raw"``, ``"openai-chat"`` or ``"gemini"`` (google-genai records only).
        outcome: keep only calls whose latest feedback has this outcome.
        min_score: keep only calls whose latest feedback score is at least this.
        out: write each output line here instead of collecting it.

    Returns:
        ``(output_lines, counts)`` with counts of ``calls``, ``exported``,
        ``skipped`` (not convertible) and ``bad_lines``.

    Raises:
        ValueError: for an unknown format.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}")
    bad: list[int] = []
    latest: dict[str, dict[str, Any]] = {}
    for rec in _records(lines, bad):
        if rec.get("type") == "feedback" and isinstance(rec.get("target"), str):
            prev = latest.get(rec["target"])
            if prev is None or _newer(rec, prev):
                latest[rec["target"]] = rec
    counts = {"calls": 0, "exported": 0, "skipped": 0, "bad_lines": 0}
    result: list[str] = []
    for rec in _records(lines, []):
        if rec.get("type") != "call":
            continue
        counts["calls"] += 1
        fb_by_id = latest.get(str(rec.get("id")))
        rid = rec.get("response_id")
        fb_by_rid = latest.get(rid) if isinstance(rid, str) else None
        fb = fb_by_id
        if fb_by_rid is not None and (fb is None or _newer(fb_by_rid, fb)):
            fb = fb_by_rid
        score = fb.get("score") if fb else None
        if not accepts(
            fb.get("outcome") if fb else None,
            float(score) if isinstance(score, (int, float)) else None,
            outcome,
            min_score,
        ):
            continue
        if fmt == "raw":
            item: dict[str, Any] | None = rec
        elif fmt == "gemini":
            item = to_gemini(rec)
        else:
            item = to_openai_chat(rec)
        if item is None:
            counts["skipped"] += 1
            continue
        line = json.dumps(item, ensure_ascii=False, separators=(",", ":"))
        counts["exported"] += 1
        if out is not None:
            out.write(line + "\n")
        else:
            result.append(line)
    counts["bad_lines"] = len(bad)
    return result, counts
