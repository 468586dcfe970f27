"""Clients and payloads shared by the fake provider's tests (real SDKs, real sockets)."""

from __future__ import annotations

import json

import anthropic
import openai
import pydantic

from logos_shift.testing import FakeProvider

try:  # openai 3.x / anthropic 2.x use httpx2; older releases use httpx
    import httpx2 as httpx
except ImportError:  # pragma: no cover - oldest-SDK run
    import httpx  # type: ignore[no-redef]

#: anthropic < 0.50 has no OverloadedError; 529 is then a plain APIStatusError.
OVERLOADED: type[anthropic.APIStatusError] = getattr(
    anthropic, "OverloadedError", anthropic.APIStatusError
)
USER = [{"role": "user", "content": "what is the weather"}]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city", "days"],
        },
    },
}
ANTHROPIC_TOOL = {
    "name": "get_weather",
    "description": "weather",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}


class City(pydantic.BaseModel):
    name: str
    population: int
    tags: list[str]


def oai(fp: FakeProvider, retries: int = 0) -> openai.OpenAI:
    return openai.OpenAI(base_url=fp.openai_base_url, api_key="test", max_retries=retries)


def aoai(fp: FakeProvider, retries: int = 0) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=fp.openai_base_url, api_key="test", max_retries=retries)


def ant(fp: FakeProvider, retries: int = 0) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=fp.anthropic_base_url, api_key="test", max_retries=retries)


def aant(fp: FakeProvider, retries: int = 0) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(
        base_url=fp.anthropic_base_url, api_key="test", max_retries=retries
    )


def training_jsonl(n: int = 10) -> bytes:
    rows = [
        {"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "a"}]}
        for i in range(n)
    ]
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


__all__ = [
    "ANTHROPIC_TOOL",
    "OVERLOADED",
    "USER",
    "WEATHER_TOOL",
    "City",
    "aant",
    "ant",
    "aoai",
    "httpx",
    "oai",
    "training_jsonl",
]
