"""Scenarios shared by the LangChain OpenAI and Anthropic tests."""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import BaseModel

PROMPT = "one two three"


class Weather(BaseModel):
    """The weather in a city."""

    city: str
    degrees: int


def get_weather(city: str) -> str:
    """Tell the weather in a city."""
    return f"sunny in {city}"


def message(m: Any) -> dict[str, Any]:
    """What a LangChain AIMessage carries that a record must match."""
    return {
        "content": m.content,
        "tool_calls": [(c["name"], c["args"]) for c in getattr(m, "tool_calls", [])],
        "id": (m.response_metadata or {}).get("id"),
    }


def invoke(llm: Any) -> dict[str, Any]:
    """``llm.invoke`` (sync)."""
    return message(llm.invoke(PROMPT))


async def ainvoke(llm: Any) -> dict[str, Any]:
    """``await llm.ainvoke`` (async)."""
    return message(await llm.ainvoke(PROMPT))


def stream(llm: Any) -> dict[str, Any]:
    """``llm.stream`` (sync): the tokens and their sum."""
    chunks = list(llm.stream(PROMPT))
    total = chunks[0]
    for c in chunks[1:]:
        total = total + c
    return {"tokens": [c.content for c in chunks], **message(total)}


async def astream(llm: Any) -> dict[str, Any]:
    """``llm.astream`` (async): the tokens and their sum."""
    chunks = [c async for c in llm.astream(PROMPT)]
    total = chunks[0]
    for c in chunks[1:]:
        total = total + c
    return {"tokens": [c.content for c in chunks], **message(total)}


def tools(llm: Any) -> dict[str, Any]:
    """``bind_tools`` then ``invoke``: the model calls the tool."""
    return message(llm.bind_tools([get_weather]).invoke(PROMPT))


def structured(llm: Any) -> Any:
    """``with_structured_output(Weather)``."""
    return llm.with_structured_output(Weather).invoke(PROMPT)


async def cancelled(llm: Any, timeout: float = 0.3) -> str:
    """``ainvoke`` under ``asyncio.wait_for`` that times out (the call is cancelled)."""
    try:
        await asyncio.wait_for(llm.ainvoke(PROMPT), timeout)
    except TimeoutError:
        return "timed out"
    return "answered"


async def cancelled_stream(llm: Any, timeout: float = 0.3) -> list[str]:
    """``astream`` cancelled by ``asyncio.wait_for`` after a few tokens."""
    seen: list[str] = []

    async def consume() -> None:
        async for c in llm.astream(PROMPT):
            seen.append(c.content)

    try:
        await asyncio.wait_for(consume(), timeout)
    except TimeoutError:
        seen.append("<timed out>")
    return seen
