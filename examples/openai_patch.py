"""Capture every openai SDK call with one line: ``patch_openai()``.

Runs offline against a local fake OpenAI server unless ``OPENAI_API_KEY`` is set,
then prints what was captured (a temporary JSONL file).
``python examples/openai_patch.py``
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path

import openai

import logos_shift
from logos_shift.testing import FakeProvider


def main(path: Path, base_url: str | None) -> None:
    ls = logos_shift.init(filename=str(path))
    logos_shift.patch_openai()
    client = openai.OpenAI(base_url=base_url, api_key=os.environ.get("OPENAI_API_KEY", "offline"))
    model = "gpt-4o-mini"
    messages = [{"role": "user", "content": "Say hello in French."}]

    with logos_shift.context(dataset="greetings", user_id="u42"):
        reply = client.chat.completions.create(model=model, messages=messages)  # type: ignore[arg-type]
        print("reply:   ", reply.choices[0].message.content)
        stream = client.chat.completions.create(model=model, messages=messages, stream=True)  # type: ignore[arg-type]
        print("streamed:", "".join(c.choices[0].delta.content or "" for c in stream if c.choices))
        resp = client.responses.create(model=model, input="Say hello in Spanish.")
        print("response:", resp.output_text)

    # Feedback can target the provider's own id.
    ls.provide_feedback(reply.id, "success", score=1.0)
    client.close()
    ls.shutdown(timeout=5)

    print(f"captured to {path}:")
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        if rec["type"] == "call":
            usage = rec["usage"] or {}
            print(f"  call {rec['source']:<24} model={rec['served_model']} "
                  f"stream={(rec['stream'] or {}).get('status')} "
                  f"tokens={usage.get('input_tokens')}/{usage.get('output_tokens')} "
                  f"response_id={rec['response_id']}")  # fmt: skip
        else:
            print(f"  feedback {rec['outcome']} -> {rec['target']}")


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        url = None
        if not os.environ.get("OPENAI_API_KEY"):
            url = stack.enter_context(FakeProvider()).openai_base_url
        main(Path(tmp) / "calls.jsonl", url)
