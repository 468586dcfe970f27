"""The entry points the contract tests run every rule through, by registration.

A driver makes exactly one captured call through one entry point, with the
public API only: a function decorated with ``@ls``, a routed function, or a real
SDK client talking to :class:`logos_shift.testing.FakeProvider` over a socket.
Registering a driver here (:func:`register`) is all a new entry point or a new
provider needs to inherit every test in ``tests/contract/``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import logos_shift
from logos_shift.testing import FakeProvider, RecordedRequest


@dataclass
class Env:
    """What a driver needs for one call.

    Attributes:
        ls: the instance the call belongs to: function entry points are
            decorated with it; SDK calls run in ``ls.activate()`` when
            ``activate`` is set (else they go to whatever instance is in scope).
        fp: the fake provider SDK clients are pointed at.
        dataset: the decorator's dataset (function entry points only).
        hook: run while the call's instance is in scope (inside the decorated
            function; right after the SDK call, inside the activation block).
        activate: SDK calls only: make ``ls`` the active instance for the call.
    """

    ls: logos_shift.LogosShift
    fp: FakeProvider
    dataset: str | None = None
    hook: Callable[[], None] = lambda: None
    activate: bool = False


@dataclass(frozen=True)
class Driver:
    """One entry point.

    Attributes:
        name: the test id.
        run: makes one captured call.
        provider: the SDK's provider name, ``None`` for function entry points.
        model: the model an SDK call asks for.
        base_url: the SDK's base URL on a fake provider (for per-variant endpoints).
        api_key: the key a request to the fake provider carried.
    """

    name: str
    run: Callable[[Env], None]
    provider: str | None = None
    model: str | None = None
    base_url: Callable[[FakeProvider], str] | None = None
    api_key: Callable[[RecordedRequest], str | None] = field(default=lambda r: None)

    @property
    def is_sdk(self) -> bool:
        """True for a patched SDK method, False for a decorated function."""
        return self.provider is not None


DRIVERS: dict[str, Driver] = {}


def register(driver: Driver) -> Driver:
    """Add an entry point to every contract test."""
    DRIVERS[driver.name] = driver
    return driver


def _scope(env: Env) -> AbstractContextManager[Any]:
    return env.ls.activate() if env.activate else nullcontext()


# -- function entry points ----------------------------------------------------


def _decorator_sync(env: Env) -> None:
    @env.ls(dataset=env.dataset)
    def f(x: int) -> dict[str, int]:
        env.hook()
        return {"x": x}

    f(1)


def _decorator_async(env: Env) -> None:
    @env.ls(dataset=env.dataset)
    async def f(x: int) -> dict[str, int]:
        env.hook()
        return {"x": x}

    asyncio.run(f(1))


def _decorator_generator(env: Env) -> None:
    @env.ls(dataset=env.dataset)
    def f(n: int) -> Iterator[int]:
        env.hook()
        yield from range(n)

    assert list(f(3)) == [0, 1, 2]


def _decorator_async_generator(env: Env) -> None:
    @env.ls(dataset=env.dataset)
    async def f(n: int) -> Any:
        env.hook()
        for i in range(n):
            yield i

    async def main() -> list[int]:
        return [i async for i in f(3)]

    assert asyncio.run(main()) == [0, 1, 2]


def _routed_sync(env: Env) -> None:
    def v2(x: int) -> dict[str, Any]:
        env.hook()
        return {"x": x, "variant": "v2"}

    @env.ls(dataset=env.dataset, variants={"v2": v2})
    def f(x: int) -> dict[str, Any]:
        env.hook()
        return {"x": x}

    f(1)


def _routed_async(env: Env) -> None:
    async def v2(x: int) -> dict[str, Any]:
        env.hook()
        return {"x": x, "variant": "v2"}

    @env.ls(dataset=env.dataset, variants={"v2": v2})
    async def f(x: int) -> dict[str, Any]:
        env.hook()
        return {"x": x}

    asyncio.run(f(1))


for _name, _run in (
    ("decorator-sync", _decorator_sync),
    ("decorator-async", _decorator_async),
    ("decorator-generator", _decorator_generator),
    ("decorator-async-generator", _decorator_async_generator),
    ("routed-sync", _routed_sync),
    ("routed-async", _routed_async),
):
    register(Driver(_name, _run))


# -- SDK entry points ---------------------------------------------------------

OPENAI_MODEL = "gpt-4o-mini"
ANTHROPIC_MODEL = "claude-3-5-haiku"
_MESSAGES = [{"role": "user", "content": "one two three"}]


def _openai_key(r: RecordedRequest) -> str | None:
    auth = r.headers.get("authorization", "")
    return auth.removeprefix("Bearer ") if auth else None


def _anthropic_key(r: RecordedRequest) -> str | None:
    # anthropic sends x-api-key, or (newer releases) a bearer token.
    return r.headers.get("x-api-key") or _openai_key(r)


def _openai(is_async: bool, stream: bool) -> Callable[[Env], None]:
    import openai

    kw: dict[str, Any] = {"model": OPENAI_MODEL, "messages": _MESSAGES}
    if stream:
        kw["stream"] = True

    def run(env: Env) -> None:
        if is_async:

            async def main() -> None:
                client = openai.AsyncOpenAI(
                    base_url=env.fp.openai_base_url, api_key="caller-key", max_retries=0
                )
                try:
                    with _scope(env):
                        r = await client.chat.completions.create(**kw)
                        if stream:
                            _ = [c async for c in r]
                        env.hook()
                finally:
                    await client.close()

            asyncio.run(main())
            return
        with (
            openai.OpenAI(
                base_url=env.fp.openai_base_url, api_key="caller-key", max_retries=0
            ) as client,
            _scope(env),
        ):
            r = client.chat.completions.create(**kw)
            if stream:
                _ = list(r)
            env.hook()

    return run


def _openai_responses(is_async: bool, stream: bool) -> Callable[[Env], None]:
    """``responses.create``: the other openai API family."""
    import openai

    kw: dict[str, Any] = {"model": OPENAI_MODEL, "input": "one two three"}
    if stream:
        kw["stream"] = True

    def run(env: Env) -> None:
        if is_async:

            async def main() -> None:
                client = openai.AsyncOpenAI(
                    base_url=env.fp.openai_base_url, api_key="caller-key", max_retries=0
                )
                try:
                    with _scope(env):
                        r = await client.responses.create(**kw)
                        if stream:
                            _ = [c async for c in r]
                        env.hook()
                finally:
                    await client.close()

            asyncio.run(main())
            return
        with (
            openai.OpenAI(
                base_url=env.fp.openai_base_url, api_key="caller-key", max_retries=0
            ) as client,
            _scope(env),
        ):
            r = client.responses.create(**kw)
            if stream:
                _ = list(r)
            env.hook()

    return run


def _anthropic(is_async: bool, stream: bool) -> Callable[[Env], None]:
    import anthropic

    kw: dict[str, Any] = {"model": ANTHROPIC_MODEL, "max_tokens": 50, "messages": _MESSAGES}
    if stream:
        kw["stream"] = True

    def run(env: Env) -> None:
        if is_async:

            async def main() -> None:
                client = anthropic.AsyncAnthropic(
                    base_url=env.fp.anthropic_base_url, api_key="caller-key", max_retries=0
                )
                try:
                    with _scope(env):
                        r = await client.messages.create(**kw)
                        if stream:
                            _ = [c async for c in r]
                        env.hook()
                finally:
                    await client.close()

            asyncio.run(main())
            return
        with (
            anthropic.Anthropic(
                base_url=env.fp.anthropic_base_url, api_key="caller-key", max_retries=0
            ) as client,
            _scope(env),
        ):
            r = client.messages.create(**kw)
            if stream:
                _ = list(r)
            env.hook()

    return run


def _anthropic_helper(is_async: bool) -> Callable[[Env], None]:
    """``messages.stream()``: the stream manager, whose request runs on ``__enter__``."""
    import anthropic

    kw: dict[str, Any] = {"model": ANTHROPIC_MODEL, "max_tokens": 50, "messages": _MESSAGES}

    def run(env: Env) -> None:
        if is_async:

            async def main() -> None:
                client = anthropic.AsyncAnthropic(
                    base_url=env.fp.anthropic_base_url, api_key="caller-key", max_retries=0
                )
                try:
                    with _scope(env):
                        async with client.messages.stream(**kw) as s:
                            _ = [t async for t in s.text_stream]
                        env.hook()
                finally:
                    await client.close()

            asyncio.run(main())
            return
        with (
            anthropic.Anthropic(
                base_url=env.fp.anthropic_base_url, api_key="caller-key", max_retries=0
            ) as client,
            _scope(env),
        ):
            with client.messages.stream(**kw) as s:
                _ = list(s.text_stream)
            env.hook()

    return run


for _is_async in (False, True):
    register(
        Driver(
            f"anthropic-{'async' if _is_async else 'sync'}-helper",
            _anthropic_helper(_is_async),
            provider="anthropic",
            model=ANTHROPIC_MODEL,
            base_url=lambda fp: fp.anthropic_base_url,
            api_key=_anthropic_key,
        )
    )

for _is_async in (False, True):
    for _stream in (False, True):
        _suffix = f"{'async' if _is_async else 'sync'}-{'stream' if _stream else 'plain'}"
        register(
            Driver(
                f"openai-{_suffix}",
                _openai(_is_async, _stream),
                provider="openai",
                model=OPENAI_MODEL,
                base_url=lambda fp: fp.openai_base_url,
                api_key=_openai_key,
            )
        )
        register(
            Driver(
                f"openai-responses-{_suffix}",
                _openai_responses(_is_async, _stream),
                provider="openai",
                model=OPENAI_MODEL,
                base_url=lambda fp: fp.openai_base_url,
                api_key=_openai_key,
            )
        )
        register(
            Driver(
                f"anthropic-{_suffix}",
                _anthropic(_is_async, _stream),
                provider="anthropic",
                model=ANTHROPIC_MODEL,
                base_url=lambda fp: fp.anthropic_base_url,
                api_key=_anthropic_key,
            )
        )


# -- helpers for the tests ----------------------------------------------------


class Captured:
    """An instance writing to a public in-memory sink."""

    def __init__(self, **settings: Any) -> None:
        self.sink = logos_shift.MemorySink()
        self.ls = logos_shift.LogosShift(sink=self.sink, **settings)

    def records(self, type_: str | None = None) -> list[dict[str, Any]]:
        """Every record written so far (after a flush), optionally of one type."""
        assert self.ls.flush(timeout=10)
        return [r for r in self.sink.records() if type_ is None or r["type"] == type_]


@contextmanager
def instance(**settings: Any) -> Iterator[Captured]:
    """A fresh instance with a memory sink, shut down afterwards."""
    cap = Captured(**settings)
    try:
        yield cap
    finally:
        cap.ls.shutdown(timeout=5)


ALL = sorted(DRIVERS)
SDK = sorted(n for n, d in DRIVERS.items() if d.is_sdk)
FUNCTIONS = sorted(n for n, d in DRIVERS.items() if not d.is_sdk)
