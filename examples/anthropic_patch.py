"""Capture every anthropic call: create, streamed create, and the .stream() helper.

Runs offline against ``logos_shift.testing.FakeProvider``; with ``ANTHROPIC_API_KEY``
set it calls the real API instead.  ``python examples/anthropic_patch.py``
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import anthropic

from logos_shift._patch_api import patch_anthropic  # logos_shift.patch_anthropic once exported
from logos_shift.testing import FakeProvider, capture_records

MODEL = "claude-sonnet-4-5"


@contextlib.contextmanager
def make_client() -> Iterator[anthropic.Anthropic]:
    if os.environ.get("ANTHROPIC_API_KEY"):
        with anthropic.Anthropic() as client:
            yield client
        return
    with (
        FakeProvider() as fp,
        anthropic.Anthropic(base_url=fp.anthropic_base_url, api_key="x") as client,
    ):
        yield client


def main() -> None:
    patch_anthropic()
    msgs = [{"role": "user", "content": "Say hello in three words"}]
    with capture_records() as cap, make_client() as client:
        msg = client.messages.create(model=MODEL, max_tokens=50, messages=msgs)
        print("reply:", msg.content[0].text)
        for _event in client.messages.create(model=MODEL, max_tokens=50, messages=msgs,
                                             stream=True):  # fmt: skip
            pass
        with client.messages.stream(model=MODEL, max_tokens=50, messages=msgs) as s:
            print("streamed:", "".join(s.text_stream))
        for rec in cap.calls:
            print(
                f"{rec['source']:20} model={rec['served_model']} "
                f"stream={rec['stream'] and rec['stream']['status']} usage={rec['usage']}"
            )


if __name__ == "__main__":
    main()
