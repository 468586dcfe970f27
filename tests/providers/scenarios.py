"""Scenario runners for the provider matrix: one user-visible outcome per run.

Each runner drives a real SDK client against the fake provider and returns a
normalised "user view" (chunks, text, exception type and status) so the same
scenario can be compared unpatched vs patched.
"""

from __future__ import annotations

import asyncio
import gc
import json
from typing import Any

import anthropic
import openai

from logos_shift.testing import FakeProvider

OA_MODEL = "gpt-4o-mini"
AN_MODEL = "claude-3-5-haiku"
PROMPT = "one two three four five six"
_IDS = ("chatcmpl-", "msg_", "resp_", "toolu_", "call_")


def norm(value: Any) -> Any:
    """Replace per-call ids and timestamps so two runs compare equal."""
    if hasattr(value, "model_dump"):
        return [type(value).__name__, norm(value.model_dump(mode="json"))]
    if isinstance(value, dict):
        return {
            k: "<x>" if k in ("id", "created", "created_at", "logos_shift_id") else norm(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [norm(v) for v in value]
    if isinstance(value, str) and value.startswith(_IDS):
        return "<id>"
    return value


def raised(exc: BaseException) -> tuple[str, str, Any]:
    """The user's view of an exception: type and HTTP status."""
    return ("raised", type(exc).__name__, getattr(exc, "status_code", None))


def _consume(it: Any, exit_: str) -> list[Any]:
    out: list[Any] = []
    if exit_ == "exhaust":
        return [norm(x) for x in it]
    out.append(norm(next(iter(it))))
    return out


def _make(sdk: str, fp: FakeProvider, is_async: bool) -> Any:
    if sdk == "openai":
        cls: Any = openai.AsyncOpenAI if is_async else openai.OpenAI
        return cls(base_url=fp.openai_base_url, api_key="k", max_retries=0)
    cls = anthropic.AsyncAnthropic if is_async else anthropic.Anthropic
    return cls(base_url=fp.anthropic_base_url, api_key="k", max_retries=0)


def _kw(sdk: str) -> dict[str, Any]:
    msgs = [{"role": "user", "content": PROMPT}]
    if sdk == "openai":
        return {"model": OA_MODEL, "messages": msgs}
    return {"model": AN_MODEL, "max_tokens": 50, "messages": msgs}


def _helper(client: Any, res: Any) -> Any:
    # openai 1.x keeps the chat stream() helper under client.beta.
    return res if hasattr(res, "stream") else client.beta.chat.completions


def run_sync(sdk: str, fp: FakeProvider, api: str, exit_: str) -> Any:
    """Run one sync scenario and return what the user saw."""
    client = _make(sdk, fp, False)
    res = client.chat.completions if sdk == "openai" else client.messages
    kw = _kw(sdk)
    try:
        if api == "plain":
            return norm(res.create(**kw))
        if api == "raw":
            return norm(res.with_raw_response.create(**kw).parse())
        if api == "sresp":
            with res.with_streaming_response.create(**kw) as r:
                return norm(json.loads(r.read()))
        if api == "stream":
            s = res.create(stream=True, **kw)
            if exit_ == "ctx":
                with s as inner:
                    assert inner is s
                    return _consume(inner, "first")
            out = _consume(s, exit_)
            if exit_ in ("break", "close"):
                s.close()
            elif exit_ == "gc":
                del s
                gc.collect()
            return out
        # helper: chat.completions.stream() / messages.stream()
        mgr = _helper(client, res).stream(**kw)
        if exit_ == "gc":
            st = mgr.__enter__()
            out = _consume(st, "first")
            del st, mgr
            gc.collect()
            return out
        with mgr as st:
            if exit_ == "exhaust" and sdk == "anthropic":
                return [st.get_final_text(), norm(st.get_final_message())]
            out = _consume(st, exit_)
            if exit_ == "close":
                st.close()
            return out
    except Exception as exc:
        return raised(exc)
    finally:
        client.close()


async def _arun(sdk: str, fp: FakeProvider, api: str, exit_: str) -> Any:
    client = _make(sdk, fp, True)
    res = client.chat.completions if sdk == "openai" else client.messages
    kw = _kw(sdk)
    try:
        if api == "plain":
            return norm(await res.create(**kw))
        if api == "raw":
            parsed = res.with_raw_response.create(**kw)
            r = await parsed
            p = r.parse()
            if asyncio.iscoroutine(p):
                p = await p
            return norm(p)
        if api == "sresp":
            async with res.with_streaming_response.create(**kw) as r:
                return norm(json.loads(await r.read()))
        if api == "stream":
            s = await res.create(stream=True, **kw)
            if exit_ == "exhaust":
                return [norm(x) async for x in s]
            if exit_ == "ctx":
                async with s as inner:
                    assert inner is s
                    return [norm(await s.__anext__())]
            out = [norm(await s.__anext__())]
            await s.close()
            return out
        async with _helper(client, res).stream(**kw) as st:
            if exit_ == "exhaust":
                if sdk == "anthropic":
                    return [await st.get_final_text()]
                return [norm(x) async for x in st]
            out = [norm(await st.__anext__())]
            await st.close()
            return out
    except Exception as exc:
        return raised(exc)
    finally:
        await client.close()


def run_async(sdk: str, fp: FakeProvider, api: str, exit_: str) -> Any:
    """Run one async scenario in a fresh event loop and return what the user saw."""
    return asyncio.run(_arun(sdk, fp, api, exit_))
