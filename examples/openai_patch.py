"""Capture every openai call: plain, streamed, and the Responses API.

Runs offline against ``logos_shift.testing.FakeProvider``; with ``OPENAI_API_KEY``
set it calls the real API instead.  ``python examples/openai_patch.py``
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import openai

import logos_shift
from logos_shift._patch_api import patch_openai  # logos_shift.patch_openai once re-exported
from logos_shift.testing import FakeProvider, capture_records


@contextlib.contextmanager
def make_client() -> Iterator[openai.OpenAI]:
    if os.environ.get("OPENAI_API_KEY"):
        with openai.OpenAI() as client:
            yield client
        return
    with FakeProvider() as fp, openai.OpenAI(base_url=fp.openai_base_url, api_key="x") as client:
        yield client


def main() -> None:
    patch_openai()  # before creating clients
    msgs = [{"role": "user", "content": "Say hello in three words"}]
    with capture_records() as cap, make_client() as client:
        with logos_shift.context(user_id="u42"):
            reply = client.chat.completions.create(model="gpt-4o-mini", messages=msgs)
        print("reply:", reply.choices[0].message.content, "| logos id:", reply.logos_shift_id)
        stream = client.chat.completions.create(model="gpt-4o-mini", messages=msgs, stream=True)
        for i, chunk in enumerate(stream):
            print("chunk:", repr(chunk.choices[0].delta.content))
            if i == 2:
                break  # an early exit is still recorded, as "partial"
        stream.close()
        client.responses.create(model="gpt-4o-mini", input="Say hello")
        logos_shift.provide_feedback(reply.id, "success")  # the provider's id works
        for rec in cap.calls:
            print(
                f"{rec['source']:26} model={rec['served_model']} "
                f"stream={rec['stream'] and rec['stream']['status']} usage={rec['usage']}"
            )
        print("feedback records:", len(cap.feedback))


if __name__ == "__main__":
    main()
