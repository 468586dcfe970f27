"""User-side scenarios run once unpatched and once patched, returning what the user saw."""

from __future__ import annotations

import asyncio
import gc
import inspect
from typing import Any

import openai

MSG = [{"role": "user", "content": "tell me a story"}]


def _text(item: Any) -> Any:
    """What a user reads from one chunk / event / result (ids and timestamps left out)."""
    choices = getattr(item, "choices", None)
    if choices is not None:
        if not choices:
            return "<no choices>"
        c = choices[0]
        delta = getattr(c, "delta", None)
        if delta is not None:
            return delta.content
        return c.message.content
    kind = getattr(item, "type", None)
    if kind == "content_block_delta":
        return getattr(item.delta, "text", None)
    if kind == "message":
        return item.content[0].text
    if isinstance(item, str):
        return item
    return kind or type(item).__name__


def _consume(it: Any, exit: str, seen: list[Any]) -> None:
    for item in it:
        seen.append(_text(item))
        if exit in ("break", "close", "gc") and len(seen) >= 2:
            break


async def _aconsume(it: Any, exit: str, seen: list[Any]) -> None:
    async for item in it:
        seen.append(_text(item))
        if exit in ("break", "close", "gc") and len(seen) >= 2:
            break


def _resource(client: Any) -> Any:
    return (
        client.chat.completions
        if isinstance(client, (openai.OpenAI, openai.AsyncOpenAI))
        else client.messages
    )


def _helper(client: Any) -> Any:
    """The resource with ``.stream()``: openai before 1.92 kept it under ``beta``."""
    res = _resource(client)
    return res if hasattr(res, "stream") else client.beta.chat.completions


def _kwargs(client: Any, stream: bool) -> dict[str, Any]:
    if isinstance(client, (openai.OpenAI, openai.AsyncOpenAI)):
        kw: dict[str, Any] = {"model": "gpt-4o-mini", "messages": MSG}
    else:
        kw = {"model": "claude-3-5-haiku", "max_tokens": 50, "messages": MSG}
    if stream:
        kw["stream"] = True
    return kw


def run_sync(client: Any, form: str, exit: str) -> dict[str, Any]:
    """Run one scenario with a sync client; return the user's view."""
    res = _resource(client)
    seen: list[Any] = []
    view: dict[str, Any] = {"seen": seen, "type": None, "error": None}
    try:
        if form == "plain":
            r = res.create(**_kwargs(client, False))
            view["type"] = type(r).__name__
            seen.append(_text(r))
        elif form == "raw":
            raw = res.with_raw_response.create(**_kwargs(client, False))
            r = raw.parse()
            view["type"] = type(r).__name__
            seen.append(_text(r))
        elif form == "streaming_response":
            with res.with_streaming_response.create(**_kwargs(client, False)) as resp:
                r = resp.parse()
                view["type"] = type(r).__name__
                seen.append(_text(r))
        elif form in ("stream", "raw_stream"):
            if form == "stream":
                s = res.create(**_kwargs(client, True))
            else:
                s = res.with_raw_response.create(**_kwargs(client, True)).parse()
            view["type"] = type(s).__name__
            if exit == "ctx":
                with s as inner:
                    view["ctx_same"] = inner is s
                    _consume(inner, exit, seen)
            else:
                _consume(s, exit, seen)
                if exit in ("break", "close"):
                    s.close()
                elif exit == "gc":
                    del s
                    gc.collect()
        elif form == "helper":
            kw = _kwargs(client, False)
            with _helper(client).stream(**kw) as s:
                view["type"] = type(s).__name__
                if exit == "exhaust":
                    seen.extend(
                        list(s.text_stream) if hasattr(s, "text_stream") else [_text(e) for e in s]
                    )
                elif exit == "final":
                    final = (
                        s.get_final_message()
                        if hasattr(s, "get_final_message")
                        else s.get_final_completion()
                    )
                    seen.append(_text(final))
                else:
                    _consume(s, exit, seen)
    except Exception as exc:
        view["error"] = (type(exc).__name__, getattr(exc, "status_code", None))
    return view


async def run_async(client: Any, form: str, exit: str) -> dict[str, Any]:
    """Run one scenario with an async client; return the user's view."""
    res = _resource(client)
    seen: list[Any] = []
    view: dict[str, Any] = {"seen": seen, "type": None, "error": None}
    try:
        if form == "plain":
            r = await res.create(**_kwargs(client, False))
            view["type"] = type(r).__name__
            seen.append(_text(r))
        elif form == "raw":
            raw = await res.with_raw_response.create(**_kwargs(client, False))
            r = raw.parse()
            if inspect.isawaitable(r):  # openai's legacy raw response parses synchronously
                r = await r
            view["type"] = type(r).__name__
            seen.append(_text(r))
        elif form == "streaming_response":
            async with res.with_streaming_response.create(**_kwargs(client, False)) as resp:
                r = resp.parse()
                if inspect.isawaitable(r):
                    r = await r
                view["type"] = type(r).__name__
                seen.append(_text(r))
        elif form in ("stream", "raw_stream"):
            if form == "stream":
                s = await res.create(**_kwargs(client, True))
            else:
                raw = await res.with_raw_response.create(**_kwargs(client, True))
                s = raw.parse()
                if inspect.isawaitable(s):
                    s = await s
            view["type"] = type(s).__name__
            if exit == "ctx":
                async with s as inner:
                    view["ctx_same"] = inner is s
                    await _aconsume(inner, exit, seen)
            else:
                await _aconsume(s, exit, seen)
                if exit in ("break", "close"):
                    await s.close()
                elif exit == "gc":
                    await s.close()  # async streams are closed by the loop, not by gc
        elif form == "helper":
            async with _helper(client).stream(**_kwargs(client, False)) as s:
                view["type"] = type(s).__name__
                if exit == "exhaust":
                    seen.extend(
                        [t async for t in s.text_stream]
                        if hasattr(s, "text_stream")
                        else [_text(e) async for e in s]
                    )
                elif exit == "final":
                    final = (
                        await s.get_final_message()
                        if hasattr(s, "get_final_message")
                        else await s.get_final_completion()
                    )
                    seen.append(_text(final))
                else:
                    await _aconsume(s, exit, seen)
    except Exception as exc:
        view["error"] = (type(exc).__name__, getattr(exc, "status_code", None))
    await asyncio.sleep(0)
    return view
