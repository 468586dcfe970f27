"""One captured SDK call: guards, timing, routing and record building.

The wrappers made here are installed by :mod:`logos_shift.providers`.  Every
capture step runs in its own :class:`_guard.guard` block that never encloses
the SDK call, so the SDK's result or exception reaches the caller unchanged
(the same object).

The caller's thread does as little as possible: a call-time snapshot of the
kwargs, two clock reads, the response's top-level ``model``/``id``/``usage``,
and a reference to the response object.  The output dict (message text, tool
calls, stop reason) is built from that reference by the provider's builder on
the background thread (:class:`~logos_shift._capture.record.LazyOutput`),
as is the JSON.  Per-target constants (source, provider name, SDK version,
stream types) are bound once, when the wrapper is made.
"""

from __future__ import annotations

import inspect
import json
import logging
import time
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Generator, Iterator
from dataclasses import dataclass
from types import MethodType
from typing import Any

from logos_shift import _guard
from logos_shift.routing import decision as _decision
from logos_shift.routing import fallback as _fallback

from . import record as _records
from . import scope as _scope
from . import snapshot as _snapshot
from . import streams as _streamwrap
from .frames import hidden_from_warnings
from .record import LazyOutput

# The provider's declarative description (logos_shift.providers.base); typed
# loosely here because the capture core sits below the providers package.
Provider = Any
Target = Any

_RAW_HEADER = "X-Stainless-Raw-Response"
#: Request options that are transport details or may carry secrets: never recorded.
_DROP = frozenset({"extra_headers", "extra_query", "extra_body", "timeout"})
#: Every guarded step name (failure-injection tests make each one raise in turn).
STEPS: tuple[str, ...] = (
    "capture_start",
    "route",
    "capture_result",
    "capture_error",
    "set_id",
    "stream_wrap",
    "stream_chunk",
    "stream_finish",
    "stream_manager",
    "build_output",
)
_logger = logging.getLogger("logos_shift")
_perf = time.perf_counter
_scope_get = _scope.SCOPE.get


@dataclass(frozen=True)
class Sdk:
    """What the wrappers know of one installed SDK, resolved once when it is patched.

    Attributes:
        info: the record's ``sdk`` field (``{name, version}``).
        stream_types: the SDK's stream classes (a result of one is captured as a stream).
        placeholders: the SDK's "argument not given" types (``Omit``, ``NotGiven``):
            left out of the record's ``input``, as the SDK leaves them out of the body.
        was_sent: ``was_sent(exc)`` is false for an exception the SDK raised on the
            client side before sending anything (a refusal): such a call records
            nothing.  None: every exception is recorded.
    """

    info: dict[str, str]
    stream_types: tuple[type, ...]
    placeholders: frozenset[type] = frozenset()
    was_sent: Callable[[BaseException], bool] | None = None


class RecordId:
    """``logos_shift_id`` on an SDK's response models, kept out of their data.

    Installed as a class attribute of the SDK's model base class (a data
    descriptor), so ``resp.logos_shift_id`` reads the id while ``dict(resp)``,
    ``vars(resp)``, iterating the response and ``model_dump()`` show the SDK's
    fields only.  The ids live in a table keyed by ``id(obj)``, each entry
    removed by a weak-reference callback when its response is freed.
    """

    __slots__ = ()
    _table: dict[int, tuple[weakref.ref[Any], str]] = {}

    def __get__(self, obj: Any, cls: Any = None) -> Any:
        if obj is None:
            return self
        entry = self._table.get(id(obj))
        if entry is not None and entry[0]() is obj:
            return entry[1]
        raise AttributeError("logos_shift_id")

    def __set__(self, obj: Any, value: str) -> None:
        key = id(obj)
        table = self._table
        table[key] = (weakref.ref(obj, lambda _r: table.pop(key, None)), value)


#: The one descriptor the providers install (``logos_shift.providers._patching``).
RECORD_ID = RecordId()


class _Call:
    """One SDK call being captured (lives on the caller's thread)."""

    __slots__ = (
        "control",
        "decision",
        "hide",
        "inst",
        "kwargs",
        "prov",
        "raw",
        "record",
        "router",
        "sdk",
        "send",
        "size",
        "t0",
        "target",
    )

    def __init__(
        self,
        prov: Provider,
        target: Target,
        record: dict[str, Any],
        size: int,
        kwargs: dict[str, Any],
        raw: Any,
        sdk: Sdk,
        inst: Any = None,
    ) -> None:
        self.inst = inst
        self.prov = prov
        self.target = target
        self.record = record
        self.size = size
        self.kwargs = kwargs
        self.raw = raw
        self.sdk = sdk
        self.decision: Any = None
        self.control: Any = None
        self.router: Any = None
        self.hide: Callable[[Any], bool] | None = None
        #: The SDK method bound to a client derived for the variant's endpoint
        #: (``None``: the caller's own client serves the call).
        self.send: Callable[..., Any] | None = None
        self.t0 = 0.0

    # -- routing -----------------------------------------------------------
    def can_fall_back(self, exc: Exception) -> bool:
        """Whether a failed variant call should be re-sent with the control model."""
        ok = False
        with _guard.guard("route"):
            d = self.decision
            ok = bool(
                d is not None
                and d.is_variant
                and d.fallback
                and _fallback.is_fallback_error(exc, self.send is not None)
            )
            if ok:
                self.router.record_result(d.route, d.variant, False)
                self.record["fallback"] = True
                self.record["error"] = _records.error_info(exc)
                self.decision = None  # fall back once, and never report the arm again
        return ok

    def control_kwargs(self, original: dict[str, Any]) -> dict[str, Any]:
        """The original request, sent to the control model."""
        send = original
        with _guard.guard("route"):
            send = dict(original)
            send["model"] = self.control or self.record["requested_model"]
        self.t0 = _perf()
        return send

    def _report(self, ok: bool) -> None:
        d = self.decision
        if d is not None and d.is_variant:
            self.router.record_result(d.route, d.variant, ok)

    # -- outcome -----------------------------------------------------------
    def failed(self, exc: BaseException) -> None:
        """Record the SDK's exception (the caller re-raises the same object).

        A ``BaseException`` that is no ``Exception`` (``CancelledError`` of a
        cancelled task or ``asyncio.wait_for``, ``KeyboardInterrupt``) is recorded
        as the error of that type, but not reported against a routed variant: the
        caller stopped the call, the model did not fail it.
        """
        with _guard.guard("capture_error"):
            _guard.fault("capture_error")
            rec = self.record
            rec["latency_ms"] = (_perf() - self.t0) * 1000.0
            rec["error"] = _records.error_info(exc)
            if isinstance(exc, Exception):
                self._report(False)
            _records.submit(rec, self.size, self.inst)

    def refused(self, exc: Exception) -> bool:
        """Whether the SDK refused the call client-side (nothing sent): then nothing is recorded."""
        sent = True
        with _guard.guard("capture_error"):
            check = self.sdk.was_sent
            sent = check is None or check(exc)
        return not sent

    def done(self, parsed: Any, result: Any) -> None:
        """Capture a returned response, stream or raw response."""
        _guard.fault("capture_result")
        if self.decision is not None:
            self._report(True)
        rec = self.record
        if isinstance(parsed, self.sdk.stream_types):
            self.stream(parsed)
            return
        rec["latency_ms"] = (_perf() - self.t0) * 1000.0
        if parsed is None:
            self._defer_body(result)
            return
        fill_from_response(parsed, rec, self.target)
        _set_id(parsed, rec["id"])
        _records.submit(rec, self.size, self.inst)

    def stream(self, parsed: Any) -> None:
        """Capture a stream the SDK returned: its record is finished by the stream."""
        rec = self.record
        cap = _streamwrap.StreamCapture(
            rec, self.size, self.t0, self.target.assemble, self.hide, self.inst
        )
        _streamwrap.instrument(parsed, cap, is_async=self.target.is_async)
        _set_id(parsed, rec["id"])

    def _defer_body(self, result: Any) -> None:
        """``with_streaming_response``: record when the caller closes the response.

        The body is the caller's to read; nothing is read here.  When the
        response is closed (the ``with`` block ends) the record takes the
        output from what the caller read: the object ``parse()`` returned, or
        the JSON body after ``read()`` / ``json()`` / ``text()`` / iterating
        it.  A body left unread records the call without output; a response
        that is never closed is recorded when it is garbage-collected.  A
        stream (``stream=True``) that the caller gets from ``parse()`` is
        captured as any other stream: its record is finished by the stream.
        """
        rec = self.record
        status = getattr(result, "status_code", None)
        if isinstance(status, int) and status >= 400:
            rec["error"] = {"type": "HTTPStatus", "message": "", "status": status}
        original = _streamwrap.caller(result, "close")  # no cycle through ``result``
        if original is None:
            _records.submit(rec, self.size, self.inst)
            return
        body = _BodyCapture(rec, self.size, self.target, result, self.inst)
        parse = _streamwrap.caller(result, "parse") if self.kwargs.get("stream") is True else None
        result.close = _streamwrap.close_then(original, body.finish, self.target.is_async)
        if parse is not None:
            result.parse = _parse_hook(parse, body, self, self.target.is_async)
        weakref.finalize(result, body.finish)
        _set_id(result, rec["id"])


def _parse_hook(parse: Callable[..., Any], body: _BodyCapture, call: _Call, is_async: bool) -> Any:
    """``response.parse()`` of a ``with_streaming_response`` stream: capture the stream it gives."""

    def take(out: Any) -> None:
        with _guard.guard("stream_wrap"):
            if not body.done and isinstance(out, call.sdk.stream_types):
                call.stream(out)
                body.done = True  # the stream finishes the record now, not the close

    if is_async:

        async def aparse(*args: Any, **kwargs: Any) -> Any:
            out = await parse(*args, **kwargs)
            take(out)
            return out

        return aparse

    def sparse(*args: Any, **kwargs: Any) -> Any:
        out = parse(*args, **kwargs)
        take(out)
        return out

    return sparse


class _BodyCapture:
    """The record of a ``with_streaming_response`` call, finished once at close.

    Holds the HTTP response, the SDK's parse cache and the response type, not
    the SDK's response object itself, so a ``weakref.finalize`` on that object
    can still read what the caller read after the object is gone.
    """

    __slots__ = ("cast_to", "done", "http", "inst", "parsed", "record", "size", "target")

    def __init__(
        self, record: dict[str, Any], size: int, target: Target, response: Any, inst: Any = None
    ) -> None:
        self.inst = inst
        self.record = record
        self.size = size
        self.target = target
        self.http: Any = getattr(response, "http_response", None)
        self.parsed: Any = getattr(response, "_parsed_by_type", None)
        self.cast_to: Any = getattr(response, "_cast_to", None)
        self.done = False

    def finish(self) -> None:
        """Fill the output from what the caller read, then submit (once)."""
        if self.done:
            return
        self.done = True
        rec = self.record
        with _guard.guard("capture_result"):
            self._fill(rec)
        _records.submit(rec, self.size, self.inst)

    def _fill(self, rec: dict[str, Any]) -> None:
        if self.parsed:
            first = next(iter(self.parsed.values()))
            if not hasattr(first, "_iterator"):  # a Stream the caller read itself: no output
                fill_from_response(first, rec, self.target)
            return
        http = self.http
        content = getattr(http, "_content", None)  # set once the body was read
        if not content or "json" not in str(http.headers.get("content-type", "")):
            return
        data = json.loads(content)
        if not isinstance(data, dict):
            return
        rec["served_model"] = data.get("model")
        rid = data.get("id")
        rec["response_id"] = rid if isinstance(rid, str) else None
        usage = data.get("usage")
        if isinstance(usage, dict):
            inp, out = self.target.usage_keys
            rec["usage"] = {"input_tokens": usage.get(inp), "output_tokens": usage.get(out)}
        cast_to = self.cast_to
        build = self.target.build
        if build is None or not hasattr(cast_to, "construct"):
            rec["output"] = data
            return
        rec["output"] = LazyOutput(lambda d: build(cast_to.construct(**d)), data)


def _set_id(obj: Any, call_id: str) -> None:
    with _guard.guard("set_id"):
        _guard.fault("set_id")
        if hasattr(obj, "model_dump"):
            # object.__setattr__: pydantic would put a plain setattr into the
            # model's extra fields, changing what model_dump() returns.
            object.__setattr__(obj, "logos_shift_id", call_id)
        else:  # streams, and proxies around them (another library's wrapper)
            obj.logos_shift_id = call_id


def _begin(
    prov: Provider,
    target: Target,
    kwargs: dict[str, Any],
    sdk: Sdk,
    wrapped: Any = None,
    resource: Any = None,
) -> _Call | None:
    """Start a capture; None means "just call the SDK" (no instance, or a failure)."""
    call = None
    with _guard.guard("capture_start"):
        _guard.fault("capture_start")
        inst = _scope.capturing_instance()
        if inst is None:
            return None
        rec = _records.new_call(target.source, prov.name, inst)
        skip = sdk.placeholders
        if prov.scrub is not None:
            rec["input"], size = _snapshot.snapshot(prov.scrub(kwargs), skip)
        elif _DROP.isdisjoint(kwargs):
            rec["input"], size = _snapshot.snapshot(kwargs, skip)
        else:
            clean = {k: v for k, v in kwargs.items() if k not in _DROP}
            rec["input"], size = _snapshot.snapshot(clean, skip)
        model = kwargs.get("model")
        rec["requested_model"] = None if type(model) in skip else model
        rec["sdk"] = sdk.info
        headers = kwargs.get("extra_headers")
        raw = headers.get(_RAW_HEADER) if headers else None
        call = _Call(prov, target, rec, size, kwargs, raw, sdk, inst)
        _route(call, inst, wrapped, resource)
        if (
            kwargs.get("stream") is True
            and target.source in prov.stream_usage_sources
            and prov.usage_only is not None
            and inst.settings.inject_stream_usage
        ):
            opts = call.kwargs.get("stream_options")
            if not opts or "include_usage" not in opts:
                call.kwargs = {
                    **call.kwargs,
                    "stream_options": {**(opts or {}), "include_usage": True},
                }
                call.hide = prov.usage_only
        _scope.set_last_call_id(rec["id"])
        call.t0 = _perf()
    return call


def _route(call: _Call, inst: Any, wrapped: Any, resource: Any) -> None:
    with _guard.guard("route"):
        _guard.fault("route")
        router = inst.router
        if router is None:
            return
        scope = _scope_get()
        d = router.decide(call.record["dataset"], call.kwargs.get("model"), scope.metadata)
        if d is None:
            return
        applied = _decision.apply(d, call.kwargs)
        if applied is None:
            return
        if applied.endpoint is not None:
            call.send = _on_endpoint(call.prov, wrapped, resource, applied.endpoint)
            if call.send is None:
                return
        rec = call.record
        rec["route"], rec["variant"] = d.route, d.variant
        call.control = d.control_model
        call.kwargs = applied.kwargs
        call.decision = d
        call.router = router


#: Per caller's SDK resource: the resources of clients derived for other endpoints.
_derived: weakref.WeakKeyDictionary[Any, dict[Any, Any]] = weakref.WeakKeyDictionary()
_no_derive_warned: set[str] = set()


def _on_endpoint(prov: Provider, wrapped: Any, resource: Any, endpoint: Any) -> Any:
    """``wrapped`` (the SDK method) bound to a client derived for ``endpoint``, or None.

    The derived client is made by the provider's ``derive_endpoint`` hook from
    the caller's (its options, with the endpoint's base URL and key) and kept
    per caller's resource and endpoint, so its connection pool is reused; the
    caller's client itself is never changed.  Bound through the original
    function, so the derived call is not captured a second time.
    """
    derive = getattr(prov, "derive_endpoint", None)
    func = getattr(wrapped, "__func__", None)
    if derive is None or func is None or resource is None:
        if prov.name not in _no_derive_warned:
            _no_derive_warned.add(prov.name)
            _logger.warning("logos_shift: %s calls cannot be sent to a variant's base_url; "
                            "they keep the caller's model and endpoint", prov.name)  # fmt: skip
        return None
    per = _derived.get(resource)
    if per is None:
        per = _derived.setdefault(resource, {})
    other = per.get(endpoint)
    if other is None:
        other = per[endpoint] = derive(resource, endpoint.base_url, endpoint.api_key)
    return MethodType(func, other)


def make_sync(prov: Provider, target: Target, sdk: Sdk) -> Callable[..., Any]:
    """Build the wrapt wrapper of a sync target."""

    def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        call = _begin(prov, target, kwargs, sdk, wrapped, instance)
        if call is None:
            return wrapped(*args, **kwargs)
        try:
            result = (call.send or wrapped)(*args, **call.kwargs)
        except Exception as exc:
            if call.refused(exc):
                raise
            if not call.can_fall_back(exc):
                call.failed(exc)
                raise
            try:
                result = wrapped(*args, **call.control_kwargs(kwargs))
            except BaseException as exc2:
                call.failed(exc2)
                raise
        except BaseException as exc:  # KeyboardInterrupt: recorded, then re-raised
            call.failed(exc)
            raise
        with _guard.guard("capture_result"):
            parsed = result
            if call.raw in ("true", "raw"):
                parsed = result.parse()
            elif call.raw is not None:
                parsed = None
            call.done(parsed, result)
        return result

    return wrapper


def make_async(prov: Provider, target: Target, sdk: Sdk) -> Callable[..., Any]:
    """Build the wrapt wrapper of an async target (``Async*`` class)."""

    async def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        call = _begin(prov, target, kwargs, sdk, wrapped, instance)
        if call is None:
            return await wrapped(*args, **kwargs)
        try:
            result = await (call.send or wrapped)(*args, **call.kwargs)
        except Exception as exc:
            if call.refused(exc):
                raise
            if not call.can_fall_back(exc):
                call.failed(exc)
                raise
            try:
                result = await wrapped(*args, **call.control_kwargs(kwargs))
            except BaseException as exc2:
                call.failed(exc2)
                raise
        except BaseException as exc:  # CancelledError: recorded, then re-raised
            call.failed(exc)
            raise
        with _guard.guard("capture_result"):
            parsed = result
            if call.raw in ("true", "raw"):
                parsed = result.parse()
                if inspect.isawaitable(parsed):  # anthropic's AsyncAPIResponse
                    parsed = await parsed
            elif call.raw is not None:
                parsed = None
            call.done(parsed, result)
        return result

    return wrapper


_END: Any = object()


def _first(it: Any) -> Any:
    try:
        return next(it)
    except StopIteration:
        return _END


async def _afirst(it: Any) -> Any:
    try:
        return await it.__anext__()
    except StopAsyncIteration:
        return _END


def _prepend(first: Any, rest: Any) -> Iterator[Any]:
    if first is not _END:
        yield first
        yield from rest


async def _aprepend(first: Any, rest: Any) -> AsyncGenerator[Any, None]:
    if first is not _END:
        yield first
        async for chunk in rest:
            yield chunk


def _stream_capture(call: _Call) -> _streamwrap.StreamCapture | None:
    cap = None
    with _guard.guard("stream_wrap"):
        _guard.fault("stream_wrap")
        call._report(True)
        cap = _streamwrap.StreamCapture(
            call.record, call.size, call.t0, call.target.assemble, call.hide, call.inst
        )
    return cap


def make_generator(prov: Provider, target: Target, sdk: Sdk) -> Callable[..., Any]:
    """Wrap a method that returns a plain (async) iterator whose request runs lazily.

    The user gets a generator of the same chunks.  The request's failure shows
    on the first ``next()``: a variant that fails there is re-sent once to the
    control model (routing fallback) before any chunk reached the user.  The
    record is finished once on every exit path, as for SDK stream objects; a
    generator never iterated made no request and leaves no record.
    """
    if target.is_async:

        async def agen(call: _Call, wrapped: Any, args: Any, kwargs: Any) -> AsyncIterator[Any]:
            call.t0 = _perf()
            try:
                inner = await wrapped(*args, **call.kwargs)
                first = await _afirst(inner)
            except Exception as exc:
                if not call.can_fall_back(exc):
                    call.failed(exc)
                    raise
                try:
                    inner = await wrapped(*args, **call.control_kwargs(kwargs))
                    first = await _afirst(inner)
                except BaseException as exc2:
                    call.failed(exc2)
                    raise
            except BaseException as exc:  # CancelledError: recorded, then re-raised
                call.failed(exc)
                raise
            cap = _stream_capture(call)
            rest = _aprepend(first, inner)
            chunks: Any = rest if cap is None else _streamwrap._async_gen(rest, cap)
            try:
                async for chunk in chunks:
                    yield chunk
            finally:  # no ``yield from`` here: close the inner generators ourselves, now
                await chunks.aclose()

        async def awrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
            call = _begin(prov, target, kwargs, sdk, wrapped, instance)
            if call is None:
                return await wrapped(*args, **kwargs)
            return agen(call, wrapped, args, kwargs)

        return awrapper

    def gen(call: _Call, wrapped: Any, args: Any, kwargs: Any) -> Iterator[Any]:
        call.t0 = _perf()
        try:
            inner = wrapped(*args, **call.kwargs)
            first = _first(inner)
        except Exception as exc:
            if not call.can_fall_back(exc):
                call.failed(exc)
                raise
            try:
                inner = wrapped(*args, **call.control_kwargs(kwargs))
                first = _first(inner)
            except BaseException as exc2:
                call.failed(exc2)
                raise
        except BaseException as exc:  # KeyboardInterrupt: recorded, then re-raised
            call.failed(exc)
            raise
        cap = _stream_capture(call)
        rest = _prepend(first, inner)
        if cap is None:
            yield from rest
            return
        yield from _streamwrap._sync_gen(rest, cap)

    def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        call = _begin(prov, target, kwargs, sdk, wrapped, instance)
        if call is None:
            return wrapped(*args, **kwargs)
        return gen(call, wrapped, args, kwargs)

    return wrapper


def _request_attr(manager: Any) -> str | None:
    # The managers keep the deferred request in a name-mangled attribute
    # (``_MessageStreamManager__api_request``, ``_BetaMessageStreamManager__...``).
    for name in vars(manager):
        if name.endswith("__api_request"):
            return str(name)
    return None


class _Deferred:
    """An awaitable that makes its coroutine only when awaited.

    Put in place of an async stream manager's request: a coroutine made at
    once would warn "coroutine ... was never awaited" when the manager is
    never entered (the SDK's own request then warns as it does unpatched).
    """

    __slots__ = ("make",)

    def __init__(self, make: Callable[[], Any]) -> None:
        self.make = make

    def __await__(self) -> Generator[Any, None, Any]:
        return self.make().__await__()  # type: ignore[no-any-return]


def make_manager(prov: Provider, target: Target, sdk: Sdk) -> Callable[..., Any]:
    """Wrap ``messages.stream()``: it bypasses ``create`` and defers the request."""

    def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        call = _begin(prov, target, kwargs, sdk, wrapped, instance)
        if call is None:
            return wrapped(*args, **kwargs)
        manager = (call.send or wrapped)(*args, **call.kwargs)
        with _guard.guard("stream_manager"):
            _guard.fault("stream_manager")
            attr = _request_attr(manager)
            if attr is None:
                return manager
            original = getattr(manager, attr)
            fresh = call  # bound for the closures below

            if target.is_async:

                async def arequest() -> Any:
                    fresh.t0 = _perf()
                    try:
                        raw = await original
                    except Exception as exc:
                        if fresh.refused(exc):
                            raise
                        if not fresh.can_fall_back(exc):
                            fresh.failed(exc)
                            raise
                        again = wrapped(*args, **fresh.control_kwargs(kwargs))
                        try:
                            raw = await getattr(again, attr)
                        except BaseException as exc2:
                            fresh.failed(exc2)
                            raise
                    except BaseException as exc:
                        fresh.failed(exc)
                        raise
                    with _guard.guard("capture_result"):
                        fresh.done(raw, raw)
                    return raw

                setattr(manager, attr, _Deferred(arequest))
            else:

                def request() -> Any:
                    fresh.t0 = _perf()
                    try:
                        raw = original()
                    except Exception as exc:
                        if fresh.refused(exc):
                            raise
                        if not fresh.can_fall_back(exc):
                            fresh.failed(exc)
                            raise
                        again = wrapped(*args, **fresh.control_kwargs(kwargs))
                        try:
                            raw = getattr(again, attr)()
                        except BaseException as exc2:
                            fresh.failed(exc2)
                            raise
                    except BaseException as exc:
                        fresh.failed(exc)
                        raise
                    with _guard.guard("capture_result"):
                        fresh.done(raw, raw)
                    return raw

                setattr(manager, attr, request)
        return manager

    return wrapper


# The SDK's warnings (stacklevel counted from its own frame) skip the wrappers' frames.
make_sync = hidden_from_warnings(make_sync)
make_async = hidden_from_warnings(make_async)
make_manager = hidden_from_warnings(make_manager)
make_generator = hidden_from_warnings(make_generator)


def usage_of(obj: Any) -> dict[str, Any] | None:
    """Read ``{input_tokens, output_tokens}`` from an SDK object's ``usage``.

    Handles OpenAI chat (``prompt_tokens``/``completion_tokens``), OpenAI
    responses and Anthropic (``input_tokens``/``output_tokens``) and embeddings
    (``prompt_tokens`` only).

    Args:
        obj: an SDK response (or anything with a ``usage`` attribute).

    Returns:
        The usage dict, or None when the object has no usage.
    """
    usage = _field(obj, "usage")
    if usage is None:
        return None
    inp = _field(usage, "input_tokens")
    if inp is None:
        inp = _field(usage, "prompt_tokens")
    out = _field(usage, "output_tokens")
    if out is None:
        out = _field(usage, "completion_tokens")
    return {"input_tokens": inp, "output_tokens": out}


def _field(obj: Any, name: str) -> Any:
    # Read pydantic fields from __dict__: a missing attribute would go through
    # pydantic's __getattr__ and an AttributeError, ~10x slower.
    d = getattr(obj, "__dict__", None)
    if d is not None:
        return d.get(name)
    return getattr(obj, name, None)


def fill_from_response(resp: Any, record: dict[str, Any], target: Target) -> None:
    """Fill a non-stream call's record from the SDK response object (caller's thread).

    Reads only the top-level ``model``, ``id`` and ``usage``; the output is a
    :class:`LazyOutput` built on the background thread (or, for targets
    without a builder, the response itself, serialised there).

    Args:
        resp: the parsed SDK response.
        record: the call record to fill.
        target: the patched method, for its output builder and usage field names.
    """
    model_key, id_key, usage_key = target.head
    d = getattr(resp, "__dict__", None)
    if d is None:
        d = {model_key: getattr(resp, model_key, None), id_key: getattr(resp, id_key, None),
             usage_key: getattr(resp, usage_key, None)}  # fmt: skip
    record["served_model"] = d.get(model_key)
    rid = d.get(id_key)
    record["response_id"] = rid if isinstance(rid, str) else None
    usage = d.get(usage_key)
    if usage is not None:
        u = getattr(usage, "__dict__", None)
        if u is None:
            record["usage"] = usage_of(resp)
        else:
            inp, out = target.usage_keys
            record["usage"] = {"input_tokens": u.get(inp), "output_tokens": u.get(out)}
    build = target.build
    record["output"] = resp if build is None else LazyOutput(build, resp)
