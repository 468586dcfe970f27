"""logos_shift.export and `logos-shift export --from`: the local copy alone, no server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from logos_shift.export import export_lines, to_openai_chat


def _anthropic_record() -> dict[str, Any]:
    return {
        "type": "call",
        "id": "a1",
        "source": "anthropic.messages.create",
        "provider": "anthropic",
        "error": None,
        "input": {
            "model": "claude-3-5-haiku",
            "system": [{"type": "text", "text": "be brief"}],
            "tools": [{"name": "weather", "description": "w", "input_schema": {"type": "object"}}],
            "messages": [
                {"role": "user", "content": "weather?"},
                {
                    "role": "assistant",
                    "content": [
                        {"type": "text", "text": "checking"},
                        {"type": "tool_use", "id": "tu1", "name": "weather", "input": {"c": "P"}},
                    ],
                },
                {
                    "role": "user",
                    "content": [{"type": "tool_result", "tool_use_id": "tu1", "content": "sunny"}],
                },
            ],
        },
        "output": {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "content": [{"type": "text", "text": "It is sunny."}],
        },
    }


def test_anthropic_record_converts_with_tools_and_tool_results() -> None:
    """System, tool_use and tool_result blocks map onto system, tool_calls and tool messages."""
    assert to_openai_chat(_anthropic_record()) == {
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "weather?"},
            {
                "role": "assistant",
                "content": "checking",
                "tool_calls": [
                    {
                        "id": "tu1",
                        "type": "function",
                        "function": {"name": "weather", "arguments": '{"c":"P"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "tu1", "content": "sunny"},
            {"role": "assistant", "content": "It is sunny."},
        ],
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "weather",
                    "parameters": {"type": "object"},
                    "description": "w",
                },
            }
        ],
    }


def test_unconvertible_records_give_none() -> None:
    """Failed calls, missing output, images and non-chat sources are not exported."""
    ok = {
        "source": "openai.chat.completions",
        "error": None,
        "input": {"messages": [{"role": "user", "content": "hi"}]},
        "output": {"choices": [{"message": {"role": "assistant", "content": "yo"}}]},
    }
    assert to_openai_chat(ok) is not None
    assert to_openai_chat({**ok, "error": {"type": "E", "message": "m", "status": 500}}) is None
    assert to_openai_chat({**ok, "output": None}) is None
    assert to_openai_chat({**ok, "source": "app:fn", "output": {"sum": 3}}) is None
    image = _anthropic_record()
    image["input"]["messages"][0]["content"] = [{"type": "image", "source": {}}]
    assert to_openai_chat(image) is None


def _chat(i: int) -> dict[str, Any]:
    return {
        "schema": 1,
        "type": "call",
        "id": f"c{i}",
        "ts": f"2026-11-23T21:00:0{i}.000Z",
        "source": "openai.chat.completions",
        "error": None,
        "response_id": f"chatcmpl-{i}",
        "input": {"messages": [{"role": "user", "content": f"q{i}"}]},
        "output": {"choices": [{"message": {"role": "assistant", "content": f"a{i}"}}]},
    }


def _fb(target: str, outcome: str, ts: str, score: float | None = None) -> dict[str, Any]:
    return {"type": "feedback", "id": f"f-{target}-{ts}", "ts": ts, "target": target,
            "outcome": outcome, "score": score}  # fmt: skip


def _lines() -> list[str]:
    recs = [
        _fb("c0", "success", "2026-11-23T22:00:00.000Z", 0.9),  # before its call
        _chat(0),
        _chat(1),
        _chat(2),
        _fb("chatcmpl-1", "success", "2026-11-23T22:00:00.000Z", 0.4),  # by response id
        _fb("c2", "success", "2026-11-23T22:00:00.000Z"),
        _fb("c2", "failure", "2026-11-23T23:00:00.000Z"),  # later verdict wins
    ]
    return [json.dumps(r) for r in recs] + ["not json", ""]


def test_export_lines_joins_feedback_and_filters() -> None:
    """Feedback joins by id or response id (latest wins); outcome and min_score filter."""
    out, counts = export_lines(_lines(), "openai-chat", outcome="success")
    assert [json.loads(x)["messages"][0]["content"] for x in out] == ["q0", "q1"]
    assert counts == {"calls": 3, "exported": 2, "skipped": 0, "bad_lines": 1}
    out, _ = export_lines(_lines(), "raw", min_score=0.5)
    assert [json.loads(x)["id"] for x in out] == ["c0"]
    out, _ = export_lines(_lines(), "raw", outcome="failure")
    assert [json.loads(x)["id"] for x in out] == ["c2"]


def test_export_cli_works_without_the_server_extra(tmp_path: Path) -> None:
    """`logos-shift export --from` runs with FastAPI, SQLAlchemy and uvicorn unimportable."""
    src = tmp_path / "calls.jsonl"
    src.write_text("\n".join(_lines()) + "\n")
    code = (
        "import sys\n"
        "for m in ('fastapi', 'sqlalchemy', 'uvicorn', 'starlette', 'pydantic'):\n"
        "    sys.modules[m] = None\n"
        "from logos_shift.cli import main\n"
        "raise SystemExit(main(sys.argv[1:]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, "export", "--from", str(src), "--format", "openai-chat",
         "--outcome", "success"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    examples = [json.loads(x) for x in result.stdout.splitlines()]
    assert [e["messages"][-1] for e in examples] == [
        {"role": "assistant", "content": "a0"},
        {"role": "assistant", "content": "a1"},
    ]
    assert "exported 2 of 3 calls" in result.stderr
    out = tmp_path / "train.jsonl"
    again = subprocess.run(
        [sys.executable, "-m", "logos_shift", "export", "--from", str(src), "-o", str(out)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert len(out.read_text().splitlines()) == 3
    missing = subprocess.run(
        [sys.executable, "-m", "logos_shift", "export", "--from", str(tmp_path / "nope.jsonl")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert missing.returncode == 2
    assert "cannot read" in missing.stderr
