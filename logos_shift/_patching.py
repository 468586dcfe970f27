"""The shared wrapt machinery behind ``patch_openai()`` / ``patch_anthropic()``.

One wrapper per target, built from the provider's data.  Capture code runs
in :func:`_guard.guard` blocks that never enclose the SDK call, so the SDK's
own result or exception reaches the caller unchanged (the same object).

Routing hook: before the SDK call, ``ROUTE_HOOK(info)`` (or, when it is None,
the current instance's router) may return a decision with ``model``,
``param_overrides``, ``route``, ``variant``, ``fallback``, ``control_model``,
``arm`` and optionally ``client`` (another SDK client to serve the call).
A failed variant call (connection error, timeout, 5xx, 404, 408, 429) is
re-sent once with the requested model when ``fallback`` is on.
"""

from __future__ import annotations

import inspect
import threading
import warnings
from collections.abc import Callable, Mapping
from importlib import metadata
from typing import Any

import wrapt

from . import _context, _fallback, _guard, _records, _snapshot
from ._streams import Call, _now, tag, wrap_stream
from .providers import Provider, load
from .providers._base import SECRET_KWARGS, Target, parse_version

_RAW_HEADER = "X-Stainless-Raw-Response"


class RequestInfo:
    """What the routing hook sees of one SDK call (read-only by convention).

    Attributes:
        provider: ``"openai"`` or ``"anthropic"``.
        source: the record's source (``"openai.chat.completions"``).
        model: the model the caller asked for.
        kwargs: the call's keyword arguments (do not mutate).
        dataset: the current dataset; metadata: the current metadata.
    """

    __slots__ = ("dataset", "kwargs", "metadata", "model", "provider", "source")

    def __init__(self, provider: str, source: str, model: Any, kwargs: Mapping[str, Any],
                 dataset: str | None, metadata: Mapping[str, Any]) -> None:  # fmt: skip
        self.provider = provider
        self.source = source
        self.model = model
        self.kwargs = kwargs
        self.dataset = dataset
        self.metadata = metadata


#: The router's entry point: ``ROUTE_HOOK(RequestInfo) -> decision | None``.
#: None means "ask the current LogosShift instance's router, if any".
ROUTE_HOOK: Callable[[RequestInfo], Any] | None = None

_lock = threading.Lock()
# provider name -> [(target, wrapper handle)]
_installed: dict[str, list[tuple[Target, Any]]] = {}
_warned: set[str] = set()


def _current_client() -> Any:
    from . import _client

    return _context._scope.get().client or _client._current.get() or _client._default


def inject_usage() -> bool:
    """Whether to ask for ``stream_options.include_usage`` (the instance's setting)."""
    client = _current_client()
    return bool(client is not None and client.settings.inject_stream_usage)


def _default_route(info: RequestInfo) -> Any:
    client = _current_client()
    router = None if client is None else client._router
    if router is None:
        return None
    return router.decide(info.dataset, info.model, info.metadata)


# -- one call ---------------------------------------------------------------


class _Plan:
    """The call as it will be sent: kwargs after routing, plus capture state."""

    __slots__ = ("call", "client", "decision", "hide_usage", "kwargs", "raw", "requested")

    def __init__(self) -> None:
        self.call: Call | None = None
        self.decision: Any = None
        self.client: Any = None
        self.kwargs: dict[str, Any] | None = None
        self.hide_usage = False
        self.raw: str | None = None
        self.requested: Any = None


def _start(p: Provider, t: Target, kwargs: dict[str, Any], sdk: dict[str, str]) -> _Plan:
    _guard.fault("capture.start")
    plan = _Plan()
    scope = _context.current()
    rec = _records.new_call(t.source, p.name)
    model = kwargs.get("model")
    plan.requested = model
    rec["requested_model"] = model
    rec["sdk"] = sdk
    clean = {k: v for k, v in kwargs.items() if k not in SECRET_KWARGS}
    rec["input"], _size = _snapshot.snapshot(clean)
    headers = kwargs.get("extra_headers")
    if headers:
        raw = headers.get(_RAW_HEADER) if isinstance(headers, Mapping) else None
        plan.raw = raw if isinstance(raw, str) else None
    send = kwargs
    with _guard.guard("router"):
        hook = ROUTE_HOOK or _default_route
        info = RequestInfo(p.name, t.source, model, kwargs, scope.dataset, scope.metadata)
        decision = hook(info)
        if decision is not None:
            plan.decision = decision
            rec["route"] = getattr(decision, "route", None)
            rec["variant"] = getattr(decision, "variant", None)
            new_model = getattr(decision, "model", None)
            overrides = getattr(decision, "param_overrides", None)
            if (new_model is not None and new_model != model) or overrides:
                send = dict(kwargs)
                send.update(overrides or {})
                if new_model is not None:
                    send["model"] = new_model
            plan.client = getattr(decision, "client", None)
    if t.kind == "chat" and kwargs.get("stream") and inject_usage():
        copy = dict(send)
        if p.want_usage_chunk(t.kind, copy):
            send, plan.hide_usage = copy, True
    plan.kwargs = send
    on_end = None
    if plan.decision is not None and getattr(plan.decision, "arm", None) == "variant":
        on_end = _breaker_feed(plan.decision)
    plan.call = Call(rec, None, on_end)
    return plan


def _breaker_feed(decision: Any) -> Callable[[bool], None] | None:
    client = _current_client()
    router = None if client is None else client._router
    if router is None:
        return None

    def feed(ok: bool) -> None:
        router.record_result(decision.route, decision.variant, ok)

    return feed


def _target_fn(plan: _Plan, t: Target, wrapped: Any) -> Any:
    """The callable to send with: the wrapped method, or the decision's client's."""
    if plan.client is None:
        return wrapped
    resource = plan.client
    for part in t.source.split(".")[1:]:
        resource = getattr(resource, part)
    method = getattr(type(resource), t.name.split(".")[1])
    original = getattr(method, "__wrapped__", method)
    return lambda *a, **kw: original(resource, *a, **kw)


def _can_fall_back(plan: _Plan, exc: BaseException) -> bool:
    d = plan.decision
    if d is None or not getattr(d, "fallback", False) or getattr(d, "arm", None) != "variant":
        return False
    other = plan.client is not None or getattr(d, "base_url", None) is not None
    return _fallback.is_fallback_error(exc, other_endpoint=other)


def _fallback_kwargs(plan: _Plan, kwargs: dict[str, Any]) -> dict[str, Any]:
    control = getattr(plan.decision, "control_model", None) or plan.requested
    out = dict(kwargs)
    if control is not None:
        out["model"] = control
    return out


def _mark_fallback(plan: _Plan, exc: BaseException) -> None:
    _guard.fault("router.fallback")
    assert plan.call is not None
    rec = plan.call.record
    rec["fallback"] = True
    rec["error"] = _records.error_info(exc)  # the variant's error, as for decorated functions
    if plan.call.on_end is not None:
        plan.call.on_end(False)
        plan.call.on_end = None


def _on_result(p: Provider, t: Target, plan: _Plan, result: Any, is_async: bool) -> None:
    """Attach capture to what the SDK returned (runs inside a guard)."""
    _guard.fault("capture.result")
    call = plan.call
    assert call is not None
    tag(result, call.record["id"])
    if plan.raw is not None and hasattr(result, "http_response"):
        _on_raw(p, t, plan, result, is_async)
    elif p.is_stream(result):
        call.acc = p.accumulator(t.kind, plan.hide_usage)
        wrap_stream(result, call, is_async)
    else:
        call.finish(None, result=result, fill=lambda r, rec: p.fill_response(t.kind, r, rec))


def _on_raw(p: Provider, t: Target, plan: _Plan, resp: Any, is_async: bool) -> None:
    call = plan.call
    assert call is not None
    parse_is_async = inspect.iscoroutinefunction(resp.parse)
    if plan.raw == "true" and not parse_is_async:
        # parse() is cached by the SDK: the user gets this very object (or stream)
        _on_result(p, t, _with_raw(plan, None), resp.parse(), is_async)
        return
    # streaming response (or async raw): capture when the user parses, or on close
    orig_parse = resp.parse
    call.armed = True
    if parse_is_async:

        async def aparse(*args: Any, **kwargs: Any) -> Any:
            parsed = await orig_parse(*args, **kwargs)
            if not args and not kwargs:
                with _guard.guard("capture.result"):
                    _on_result(p, t, _with_raw(plan, None), parsed, True)
            return parsed

        object.__setattr__(resp, "parse", aparse)
    else:

        def parse(*args: Any, **kwargs: Any) -> Any:
            parsed = orig_parse(*args, **kwargs)
            if not args and not kwargs:
                with _guard.guard("capture.result"):
                    _on_result(p, t, _with_raw(plan, None), parsed, False)
            return parsed

        object.__setattr__(resp, "parse", parse)


def _with_raw(plan: _Plan, raw: str | None) -> _Plan:
    plan.raw = raw
    return plan


# -- wrappers ------------------------------------------------------------------


def _sync_wrapper(p: Provider, t: Target, sdk: dict[str, str]) -> Any:
    def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: dict[str, Any]) -> Any:
        plan = None
        with _guard.guard("capture.start"):
            plan = _start(p, t, kwargs, sdk)
        if plan is None or plan.call is None or plan.kwargs is None:
            return wrapped(*args, **kwargs)
        call = plan.call
        fn = wrapped if plan.client is None else _target_fn(plan, t, wrapped)
        try:
            result = fn(*args, **plan.kwargs)
        except BaseException as exc:
            if not _can_fall_back(plan, exc):
                call.finish(None, exc)
                raise
            with _guard.guard("router.fallback"):
                _mark_fallback(plan, exc)
            try:
                result = wrapped(*args, **_fallback_kwargs(plan, plan.kwargs))
            except BaseException as exc2:
                call.record["fallback"] = True
                call.record["error"] = _records.error_info(exc2)
                call.finish(None, exc2)
                raise
        with _guard.guard("capture.result"):
            if t.manager:
                _hook_manager(p, t, plan, result)
            else:
                _on_result(p, t, plan, result, False)
        return result

    return wrapper


def _async_wrapper(p: Provider, t: Target, sdk: dict[str, str]) -> Any:
    async def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: dict[str, Any]) -> Any:
        plan = None
        with _guard.guard("capture.start"):
            plan = _start(p, t, kwargs, sdk)
        if plan is None or plan.call is None or plan.kwargs is None:
            return await wrapped(*args, **kwargs)
        call = plan.call
        fn = wrapped if plan.client is None else _target_fn(plan, t, wrapped)
        try:
            result = await fn(*args, **plan.kwargs)
        except BaseException as exc:
            if not _can_fall_back(plan, exc):
                call.finish(None, exc)
                raise
            with _guard.guard("router.fallback"):
                _mark_fallback(plan, exc)
            try:
                result = await wrapped(*args, **_fallback_kwargs(plan, plan.kwargs))
            except BaseException as exc2:
                call.record["fallback"] = True
                call.record["error"] = _records.error_info(exc2)
                call.finish(None, exc2)
                raise
        with _guard.guard("capture.result"):
            _on_result(p, t, plan, result, True)
        return result

    return wrapper


def _hook_manager(p: Provider, t: Target, plan: _Plan, manager: Any) -> None:
    """Wrap the raw stream a ``.stream()`` manager opens on ``__enter__``."""
    _guard.fault("stream.manager")
    call = plan.call
    assert call is not None
    name = next(k for k in vars(manager) if k.endswith("__api_request"))
    request = vars(manager)[name]

    def opened(raw: Any) -> None:
        with _guard.guard("capture.result"):
            _on_result(p, t, plan, raw, t.is_async)

    if t.is_async:

        async def arequest() -> Any:
            call.t0 = _now()
            try:
                raw = await request
            except BaseException as exc:
                call.finish(None, exc)
                raise
            opened(raw)
            return raw

        setattr(manager, name, arequest())
    else:

        def srequest() -> Any:
            call.t0 = _now()
            try:
                raw = request()
            except BaseException as exc:
                call.finish(None, exc)
                raise
            opened(raw)
            return raw

        setattr(manager, name, srequest)


# -- install / uninstall -----------------------------------------------------------


def _sdk_version(p: Provider) -> str:
    return metadata.version(p.dist)


def patch(name: str, explicit: bool = True) -> bool:
    """Install the wrappers of provider ``name`` once.

    Args:
        name: ``"openai"`` or ``"anthropic"``.
        explicit: the user named this provider (a missing SDK then raises).

    Returns:
        True if the provider is patched after the call.

    Raises:
        ImportError: ``explicit`` and the SDK is not installed.
    """
    with _lock:
        if name in _installed:
            return True
        try:
            __import__(name)
            version = _sdk_version(load(name))
        except ImportError as exc:
            if explicit:
                raise ImportError(
                    f"logos_shift.patch_{name}() needs the {name} package: pip install {name}"
                ) from exc
            return False
        p = load(name)
        v = parse_version(version)
        if v < p.min_version or (v and v[0] >= p.max_major):
            if name not in _warned:
                _warned.add(name)
                lo = ".".join(map(str, p.min_version))
                warnings.warn(
                    f"logos_shift supports {name}>={lo},<{p.max_major}; {name} {version} is "
                    "installed, so its calls are not captured",
                    RuntimeWarning,
                    stacklevel=3,
                )
            return False
        sdk = {"name": name, "version": version}
        handles: list[tuple[Target, Any]] = []
        for t in p.targets:
            if t.min_version and v < t.min_version:
                continue
            cls_name, _, meth = t.name.partition(".")
            try:
                module = __import__(t.module, fromlist=[cls_name])
                owner = getattr(module, cls_name)
                current = owner.__dict__[meth]
            except (ImportError, AttributeError, KeyError):
                continue  # not in this SDK version
            if any(owner is o and t.name.split(".")[1] == m for o, m in _seen(handles)):
                continue  # an alias of a class already patched (beta parse in 1.92+)
            if isinstance(current, wrapt.FunctionWrapper) and _ours(current):
                continue
            make = _async_wrapper if t.is_async and not t.manager else _sync_wrapper
            handle = wrapt.wrap_function_wrapper(owner, meth, make(p, t, sdk))
            handles.append((t, (owner, meth, handle)))
        _installed[name] = handles
        return True


def _seen(handles: list[tuple[Target, Any]]) -> list[tuple[Any, str]]:
    return [(h[0], h[1]) for _, h in handles]


def _ours(wrapper: Any) -> bool:
    return any(wrapper is h[2] for hs in _installed.values() for _, h in hs)


def unpatch(name: str) -> None:
    """Remove provider ``name``'s wrappers (others' wrappers stay in place).

    Args:
        name: ``"openai"`` or ``"anthropic"``.
    """
    with _lock:
        handles = _installed.pop(name, [])
        for _, (owner, meth, handle) in handles:
            wrapt.unwrap_object(owner, meth, handle, missing_ok=True)


def patched() -> list[str]:
    """Names of the providers currently patched."""
    return sorted(_installed)


def wrapper_count(owner: Any, meth: str) -> int:
    """How many of our wrappers sit on ``owner.meth`` (tests of idempotence)."""
    mine = {id(h[2]) for hs in _installed.values() for _, h in hs}
    n = 0
    obj = owner.__dict__.get(meth)
    while isinstance(obj, wrapt.FunctionWrapper):
        n += id(obj) in mine
        obj = obj.__wrapped__
    return n
