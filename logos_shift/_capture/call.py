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
import time
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from typing import Any

from logos_shift import _guard
from logos_shift.routing import fallback as _fallback

from . import record as _records
from . import scope as _scope
from . import snapshot as _snapshot
from . import streams as _streamwrap
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
_perf = time.perf_counter
_scope_get = _scope.SCOPE.get


class _Call:
    """One SDK call being captured (lives on the caller's thread)."""

    __slots__ = (
        "control",
        "decision",
        "hide",
        "kwargs",
        "prov",
        "raw",
        "record",
        "router",
        "size",
        "stream_types",
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
        stream_types: tuple[type, ...],
    ) -> None:
        self.prov = prov
        self.target = target
        self.record = record
        self.size = size
        self.kwargs = kwargs
        self.raw = raw
        self.stream_types = stream_types
        self.decision: Any = None
        self.control: Any = None
        self.router: Any = None
        self.hide: Callable[[Any], bool] | None = None
        self.t0 = 0.0

    # -- routing -----------------------------------------------------------
    def can_fall_back(self, exc: Exception) -> bool:
        """Whether a failed variant call should be re-sent with the control model."""
        ok = False
        with _guard.guard("route"):
            d = self.decision
            ok = bool(
                d is not None and d.is_variant and d.fallback and _fallback.is_fallback_error(exc)
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
        """Record the SDK's exception (the caller re-raises the same object)."""
        with _guard.guard("capture_error"):
            _guard.fault("capture_error")
            rec = self.record
            rec["latency_ms"] = (_perf() - self.t0) * 1000.0
            rec["error"] = _records.error_info(exc)
            self._report(False)
            _records.submit(rec, self.size)

    def done(self, parsed: Any, result: Any) -> None:
        """Capture a returned response, stream or raw response."""
        _guard.fault("capture_result")
        if self.decision is not None:
            self._report(True)
        rec = self.record
        if isinstance(parsed, self.stream_types):
            cap = _streamwrap.StreamCapture(
                rec, self.size, self.t0, self.target.assemble, self.hide
            )
            _streamwrap.instrument(parsed, cap, is_async=self.target.is_async)
            _set_id(parsed, rec["id"])
            return
        rec["latency_ms"] = (_perf() - self.t0) * 1000.0
        if parsed is None:
            self._defer_body(result)
            return
        fill_from_response(parsed, rec, self.target)
        _set_id(parsed, rec["id"])
        _records.submit(rec, self.size)

    def _defer_body(self, result: Any) -> None:
        """``with_streaming_response``: record when the caller closes the response.

        The body is the caller's to read; nothing is read here.  When the
        response is closed (the ``with`` block ends) the record takes the
        output from what the caller read: the object ``parse()`` returned, or
        the JSON body after ``read()`` / ``json()`` / ``text()`` / iterating
        it.  A body left unread records the call without output; a response
        that is never closed is recorded when it is garbage-collected.
        """
        rec = self.record
        status = getattr(result, "status_code", None)
        if isinstance(status, int) and status >= 400:
            rec["error"] = {"type": "HTTPStatus", "message": "", "status": status}
        original = _streamwrap.caller(result, "close")  # no cycle through ``result``
        if original is None:
            _records.submit(rec, self.size)
            return
        body = _BodyCapture(rec, self.size, self.target, result)
        result.close = _streamwrap.close_then(original, body.finish, self.target.is_async)
        weakref.finalize(result, body.finish)
        _set_id(result, rec["id"])


class _BodyCapture:
    """The record of a ``with_streaming_response`` call, finished once at close.

    Holds the HTTP response, the SDK's parse cache and the response type, not
    the SDK's response object itself, so a ``weakref.finalize`` on that object
    can still read what the caller read after the object is gone.
    """

    __slots__ = ("cast_to", "done", "http", "parsed", "record", "size", "target")

    def __init__(self, record: dict[str, Any], size: int, target: Target, response: Any) -> None:
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
        _records.submit(rec, self.size)

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
    stream_types: tuple[type, ...],
    sdk: dict[str, str],
) -> _Call | None:
    """Start a capture; None means "just call the SDK" (no instance, or a failure)."""
    call = None
    with _guard.guard("capture_start"):
        _guard.fault("capture_start")
        inst = _scope.current_instance()
        if inst is None:
            return None
        rec = _records.new_call(target.source, prov.name)
        if prov.scrub is not None:
            rec["input"], size = _snapshot.snapshot(prov.scrub(kwargs))
        elif _DROP.isdisjoint(kwargs):
            rec["input"], size = _snapshot.snapshot(kwargs)
        else:
            clean = {k: v for k, v in kwargs.items() if k not in _DROP}
            rec["input"], size = _snapshot.snapshot(clean)
        rec["requested_model"] = kwargs.get("model")
        rec["sdk"] = sdk
        headers = kwargs.get("extra_headers")
        raw = headers.get(_RAW_HEADER) if headers else None
        call = _Call(prov, target, rec, size, kwargs, raw, stream_types)
        _route(call, inst)
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


def _route(call: _Call, inst: Any) -> None:
    with _guard.guard("route"):
        _guard.fault("route")
        router = inst.router
        if router is None:
            return
        scope = _scope_get()
        d = router.decide(scope.dataset, call.kwargs.get("model"), scope.metadata)
        if d is None:
            return
        rec = call.record
        rec["route"], rec["variant"] = d.route, d.variant
        send = dict(call.kwargs)
        if d.model:
            send["model"] = d.model
        if d.param_overrides:
            send.update(d.param_overrides)
        call.control = d.control_model
        call.kwargs = send
        call.decision = d
        call.router = router


def make_sync(
    prov: Provider, target: Target, types: tuple[type, ...], sdk: dict[str, str]
) -> Callable[..., Any]:
    """Build the wrapt wrapper of a sync target."""

    def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        call = _begin(prov, target, kwargs, types, sdk)
        if call is None:
            return wrapped(*args, **kwargs)
        try:
            result = wrapped(*args, **call.kwargs)
        except Exception as exc:
            if not call.can_fall_back(exc):
                call.failed(exc)
                raise
            try:
                result = wrapped(*args, **call.control_kwargs(kwargs))
            except Exception as exc2:
                call.failed(exc2)
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


def make_async(
    prov: Provider, target: Target, types: tuple[type, ...], sdk: dict[str, str]
) -> Callable[..., Any]:
    """Build the wrapt wrapper of an async target (``Async*`` class)."""

    async def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        call = _begin(prov, target, kwargs, types, sdk)
        if call is None:
            return await wrapped(*args, **kwargs)
        try:
            result = await wrapped(*args, **call.kwargs)
        except Exception as exc:
            if not call.can_fall_back(exc):
                call.failed(exc)
                raise
            try:
                result = await wrapped(*args, **call.control_kwargs(kwargs))
            except Exception as exc2:
                call.failed(exc2)
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
            call.record, call.size, call.t0, call.target.assemble, call.hide
        )
    return cap


def make_generator(
    prov: Provider, target: Target, types: tuple[type, ...], sdk: dict[str, str]
) -> Callable[..., Any]:
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
                except Exception as exc2:
                    call.failed(exc2)
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
            call = _begin(prov, target, kwargs, types, sdk)
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
            except Exception as exc2:
                call.failed(exc2)
                raise
        cap = _stream_capture(call)
        rest = _prepend(first, inner)
        if cap is None:
            yield from rest
            return
        yield from _streamwrap._sync_gen(rest, cap)

    def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        call = _begin(prov, target, kwargs, types, sdk)
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


def make_manager(
    prov: Provider, target: Target, types: tuple[type, ...], sdk: dict[str, str]
) -> Callable[..., Any]:
    """Wrap ``messages.stream()``: it bypasses ``create`` and defers the request."""

    def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        call = _begin(prov, target, kwargs, types, sdk)
        if call is None:
            return wrapped(*args, **kwargs)
        manager = wrapped(*args, **call.kwargs)
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
                        if not fresh.can_fall_back(exc):
                            fresh.failed(exc)
                            raise
                        again = wrapped(*args, **fresh.control_kwargs(kwargs))
                        try:
                            raw = await getattr(again, attr)
                        except Exception as exc2:
                            fresh.failed(exc2)
                            raise
                    with _guard.guard("capture_result"):
                        fresh.done(raw, raw)
                    return raw

                setattr(manager, attr, arequest())
            else:

                def request() -> Any:
                    fresh.t0 = _perf()
                    try:
                        raw = original()
                    except Exception as exc:
                        if not fresh.can_fall_back(exc):
                            fresh.failed(exc)
                            raise
                        again = wrapped(*args, **fresh.control_kwargs(kwargs))
                        try:
                            raw = getattr(again, attr)()
                        except Exception as exc2:
                            fresh.failed(exc2)
                            raise
                    with _guard.guard("capture_result"):
                        fresh.done(raw, raw)
                    return raw

                setattr(manager, attr, request)
        return manager

    return wrapper


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
