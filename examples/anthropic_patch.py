"""Capture every anthropic SDK call with one line: ``patch_anthropic()``.

Runs offline against a local fake Anthropic server unless ``ANTHROPIC_API_KEY``
is set, then prints what was captured (a temporary JSONL file).
``python examples/anthropic_patch.py``
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path

import anthropic

import logos_shift
from logos_shift.testing import FakeProvider


def main(path: Path, base_url: str | None) -> None:
    ls = logos_shift.init(filename=str(path))
    logos_shift.patch_anthropic()
    client = anthropic.Anthropic(
        base_url=base_url, api_key=os.environ.get("ANTHROPIC_API_KEY", "offline")
    )
    model = "claude-haiku-4-5"
    messages = [{"role": "user", "content": "Say hello in French."}]

    with logos_shift.context(dataset="greetings", user_id="u42"):
        msg = client.messages.create(model=model, max_tokens=64, messages=messages)  # type: ignore[arg-type]
        print("reply:   ", msg.content[0].text)  # type: ignore[union-attr]
        with client.messages.stream(model=model, max_tokens=64, messages=messages) as stream:  # type: ignore[arg-type]
            print("streamed:", "".join(stream.text_stream))

    ls.provide_feedback(msg.id, "success", score=1.0)
    client.close()
    ls.shutdown(timeout=5)

    print(f"captured to {path}:")
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        if rec["type"] == "call":
            usage = rec["usage"] or {}
            print(f"  call {rec['source']:<20} model={rec['served_model']} "
                  f"stream={(rec['stream'] or {}).get('status')} "
                  f"tokens={usage.get('input_tokens')}/{usage.get('output_tokens')} "
                  f"response_id={rec['response_id']}")  # fmt: skip
        else:
            print(f"  feedback {rec['outcome']} -> {rec['target']}")


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        url = None
        if not os.environ.get("ANTHROPIC_API_KEY"):
            url = stack.enter_context(FakeProvider()).anthropic_base_url
        main(Path(tmp) / "calls.jsonl", url)
