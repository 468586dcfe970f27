"""google-genai records become fine-tuning examples: Gemini's tuning format and OpenAI chat."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("google.genai")

from google import genai
from google.genai import types

from logos_shift import export, providers
from logos_shift.testing import FakeProvider, capture_records


@pytest.fixture(autouse=True)
def _patched() -> Any:
    """google-genai patched for the test, unpatched after."""
    providers.unpatch_all()
    providers.patch_google_genai()
    yield
    providers.unpatch_all()


def test_chat_turns_export(fake_provider: FakeProvider) -> None:
    """A chat's second turn carries the history, the system instruction and the reply."""
    opts = types.HttpOptions(base_url=fake_provider.gemini_base_url)
    client = genai.Client(api_key="secret-key", http_options=opts)
    config = types.GenerateContentConfig(system_instruction="be brief")
    with capture_records() as cap:
        chat = client.chats.create(model="gemini-2.0-flash", config=config)
        chat.send_message("hello")
        chat.send_message("again")
        client.models.generate_content(
            model="gemini-2.0-flash", contents="stream me", config={"http_options": opts}
        )
        calls = cap.calls
    assert "secret-key" not in str(calls)
    assert "http_options" not in calls[2]["input"]["config"]
    assert export.to_gemini(calls[1]) == {
        "systemInstruction": {"role": "system", "parts": [{"text": "be brief"}]},
        "contents": [
            {"role": "user", "parts": [{"text": "hello"}]},
            {"role": "model", "parts": [{"text": "Echo: hello"}]},
            {"role": "user", "parts": [{"text": "again"}]},
            {"role": "model", "parts": [{"text": "Echo: again"}]},
        ],
    }
    assert export.to_openai_chat(calls[2]) == {
        "messages": [
            {"role": "user", "content": "stream me"},
            {"role": "assistant", "content": "Echo: stream me"},
        ]
    }


def test_function_calls_and_errors_are_skipped(fake_provider: FakeProvider) -> None:
    """Records with function calls or errors give no example (not a wrong one)."""
    opts = types.HttpOptions(base_url=fake_provider.gemini_base_url)
    client = genai.Client(api_key="k", http_options=opts)
    fake_provider.script(tool_calls=[{"name": "f", "arguments": {"x": 1}}])
    with capture_records() as cap:
        client.models.generate_content(model="gemini-2.0-flash", contents="call f")
        calls = cap.calls
    assert calls[0]["output"]["candidates"][0]["content"]["parts"][0]["function_call"] == {
        "name": "f",
        "args": {"x": 1},
    }
    assert export.to_gemini(calls[0]) is None
    assert export.to_openai_chat(calls[0]) is None
    assert export.to_gemini({**calls[0], "error": {"type": "X"}}) is None
