"""``patch_openai()`` / ``patch_anthropic()``: the shared wrapt machinery.

One wrapper per patch target, built from the provider's declarative data
(:mod:`logos_shift.providers._contract`).  Every capture step runs in its own
:class:`_guard.guard` block that never encloses the SDK call, so the SDK's
result or exception reaches the caller unchanged (the same object).  The hot
path only snapshots the kwargs and reads clocks; serialisation happens on the
background thread.
"""

from __future__ import annotations

import gc
import inspect
import threading
import time
import warnings
from collections.abc import Callable
from importlib import import_module, metadata
from typing import Any

import wrapt

from . import _client, _context, _fallback, _guard, _records, _snapshot, _streamwrap
from .providers._contract import Provider, Target, fill_from_response, parse_version

_MODULES = {
    "openai": "logos_shift.providers._openai",
    "anthropic": "logos_shift.providers._anthropic",
}
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
)

_lock = threading.RLock()
#: provider name → the (owner class, method name, wrapt handle) it installed.
_installed: dict[str, list[tuple[type, str, Any]]] = {}
_warned: set[str] = set()


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
        self.t0 = time.perf_counter()
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
            rec["latency_ms"] = (time.perf_counter() - self.t0) * 1000.0
            rec["error"] = _records.error_info(exc)
            self._report(False)
            _records.submit(rec, self.size)

    def done(self, parsed: Any, result: Any) -> None:
        """Capture a returned response, stream or raw response."""
        _guard.fault("capture_result")
        self._report(True)
        rec = self.record
        if isinstance(parsed, self.stream_types):
            cap = _streamwrap.StreamCapture(
                rec, self.size, self.t0, self.target.assemble, self.hide
            )
            _streamwrap.instrument(parsed, cap, is_async=self.target.is_async)
            _set_id(parsed, rec["id"])
            return
        rec["latency_ms"] = (time.perf_counter() - self.t0) * 1000.0
        if parsed is None:
            # with_streaming_response: the body is the caller's to read; we
            # record the call (status, latency) but not the output.
            status = getattr(result, "status_code", None)
            if isinstance(status, int) and status >= 400:
                rec["error"] = {"type": "HTTPStatus", "message": "", "status": status}
        else:
            fill_from_response(parsed, rec)
            _set_id(parsed, rec["id"])
        _records.submit(rec, self.size)


def _set_id(obj: Any, call_id: str) -> None:
    with _guard.guard("set_id"):
        _guard.fault("set_id")
        if hasattr(obj, "model_dump"):
            # object.__setattr__: pydantic would put a plain setattr into the
            # model's extra fields, changing what model_dump() returns.
            object.__setattr__(obj, "logos_shift_id", call_id)
        else:  # streams, and proxies around them (another library's wrapper)
            obj.logos_shift_id = call_id


def _instance() -> Any:
    return _context._scope.get().client or _client._current.get() or _client._default


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
        inst = _instance()
        if inst is None:
            return None
        rec = _records.new_call(target.source, prov.name)
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
        _context.set_last_call_id(rec["id"])
        call.t0 = time.perf_counter()
    return call


def _route(call: _Call, inst: Any) -> None:
    with _guard.guard("route"):
        _guard.fault("route")
        router = inst.router
        if router is None:
            return
        scope = _context.current()
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


def _make_sync(
    prov: Provider, target: Target, types: tuple[type, ...], sdk: dict[str, str]
) -> Callable[..., Any]:
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


def _make_async(
    prov: Provider, target: Target, types: tuple[type, ...], sdk: dict[str, str]
) -> Callable[..., Any]:
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


def _request_attr(manager: Any) -> str | None:
    # The managers keep the deferred request in a name-mangled attribute
    # (``_MessageStreamManager__api_request``, ``_BetaMessageStreamManager__...``).
    for name in vars(manager):
        if name.endswith("__api_request"):
            return str(name)
    return None


def _make_manager(
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
                    fresh.t0 = time.perf_counter()
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
                    fresh.t0 = time.perf_counter()
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


def _mark(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn._logos_shift_wrapper = True  # type: ignore[attr-defined]
    return fn


def is_ours(obj: Any) -> bool:
    """True if ``obj`` is a wrapt wrapper that logos_shift installed.

    Args:
        obj: any object (typically a class attribute or a bound method).

    Returns:
        Whether its wrapper function is one of ours.
    """
    fn = getattr(obj, "_self_wrapper", None)
    return bool(getattr(fn, "_logos_shift_wrapper", False))


def _load(name: str) -> Provider:
    prov: Provider = import_module(_MODULES[name]).PROVIDER
    return prov


def patch(name: str, explicit: bool = True) -> bool:
    """Install the wrappers of provider ``name`` (idempotent).

    Args:
        name: ``"openai"`` or ``"anthropic"``.
        explicit: raise ImportError when the SDK is missing (else return False).

    Returns:
        True if the provider is patched after the call.

    Raises:
        ImportError: ``explicit`` and the SDK is not installed.
    """
    with _lock:
        if name in _installed:
            return True
        prov = _load(name)
        try:
            pkg = import_module(prov.package)
        except ImportError as exc:
            if explicit:
                raise ImportError(
                    f"logos_shift.patch_{name}() needs the {prov.package!r} package "
                    f"(pip install 'logos-shift[{name}]')"
                ) from exc
            return False
        try:
            version = metadata.version(prov.package)
        except metadata.PackageNotFoundError:
            version = str(getattr(pkg, "__version__", "0"))
        v = parse_version(version)
        if not prov.min_version <= v < prov.max_version:
            if name not in _warned:
                _warned.add(name)
                lo = ".".join(map(str, prov.min_version))
                hi = ".".join(map(str, prov.max_version))
                warnings.warn(
                    f"logos_shift supports {prov.package} >={lo},<{hi}; {version} is installed, "
                    f"so {prov.package} calls are not captured",
                    UserWarning,
                    stacklevel=3,
                )
            return False
        types = (pkg.Stream, pkg.AsyncStream)
        sdk = {"name": prov.package, "version": version}
        handles: list[tuple[type, str, Any]] = []
        for t in prov.targets:
            try:
                owner = getattr(import_module(t.module), t.cls)
            except (ImportError, AttributeError):
                continue  # not in this SDK version (e.g. openai 1.x has no chat parse)
            if t.method not in vars(owner) or is_ours(vars(owner)[t.method]):
                continue
            if t.kind == "stream_manager":
                fn = _make_manager(prov, t, types, sdk)
            elif t.is_async:
                fn = _make_async(prov, t, types, sdk)
            else:
                fn = _make_sync(prov, t, types, sdk)
            handle = wrapt.wrap_function_wrapper(owner, t.method, _mark(fn))
            handles.append((owner, t.method, handle))
        _installed[name] = handles
        _rebind_cached(handles, restore=False)
        return True


def unpatch(name: str) -> None:
    """Remove provider ``name``'s wrappers; other libraries' wrappers stay.

    Args:
        name: ``"openai"`` or ``"anthropic"``.
    """
    with _lock:
        handles = _installed.pop(name, None)
        if not handles:
            return
        _rebind_cached(handles, restore=True)
        for owner, method, handle in handles:
            original = getattr(handle, "__wrapped__", None)
            if vars(owner).get(method) is handle:
                setattr(owner, method, original)
                continue
            unwrap = getattr(wrapt, "unwrap_object", None)
            if unwrap is not None:  # wrapt 2: splice ours out from under another wrapper
                unwrap(owner, method, handle, missing_ok=True)


def patched() -> list[str]:
    """Return the names of the providers patched now."""
    with _lock:
        return sorted(_installed)


def _rebind_cached(handles: list[tuple[type, str, Any]], restore: bool) -> None:
    """Point ``with_raw_response`` objects built before (un)patching at the current method.

    ``resource.with_raw_response`` is a cached object whose ``create`` closes
    over the bound method as it was when first touched; a class-level patch
    never sees those calls.  The closure cell is updated in place.
    """
    owners = {(owner, method) for owner, method, _ in handles}
    for obj in gc.get_objects():
        tname = type(obj).__name__
        if not tname.endswith(("WithRawResponse", "WithStreamingResponse")):
            continue
        with _guard.guard("rebind_cached"):
            for fn in list(vars(obj).values()):
                for cell in getattr(fn, "__closure__", None) or ():
                    try:
                        bound = cell.cell_contents
                    except ValueError:
                        continue
                    if restore:
                        if is_ours(bound):
                            cell.cell_contents = bound.__wrapped__
                        continue
                    self_ = getattr(bound, "__self__", None)
                    name = getattr(bound, "__name__", None)
                    if self_ is None or is_ours(bound) or not isinstance(name, str):
                        continue
                    if any(isinstance(self_, o) and name == m for o, m in owners):
                        cell.cell_contents = getattr(self_, name)


# -- public API (re-exported by ``logos_shift``) -----------------------------


def patch_openai() -> None:
    """Capture every call of the openai SDK (>=1.66,<4), clients made earlier included.

    Covers ``chat.completions.create/parse/stream``, ``responses.create/parse/stream``
    and ``embeddings.create``, sync and async, plain, streamed and through
    ``with_raw_response`` / ``with_streaming_response``.  Patching twice is a no-op.
    An installed version outside the supported range warns once and patches nothing.

    Raises:
        ImportError: the openai package is not installed.
    """
    patch("openai")


def patch_anthropic() -> None:
    """Capture every call of the anthropic SDK (>=0.49,<3), beta messages included.

    Covers ``messages.create/stream/parse`` (and ``beta.messages``), sync and async.

    Raises:
        ImportError: the anthropic package is not installed.
    """
    patch("anthropic")


def patch_all() -> list[str]:
    """Patch every installed, supported SDK; missing ones are skipped quietly.

    Returns:
        The names of the providers patched after the call.
    """
    for name in _MODULES:
        patch(name, explicit=False)
    return patched()


def unpatch_openai() -> None:
    """Remove logos_shift's openai wrappers (other libraries' wrappers stay)."""
    unpatch("openai")


def unpatch_anthropic() -> None:
    """Remove logos_shift's anthropic wrappers (other libraries' wrappers stay)."""
    unpatch("anthropic")


def unpatch_all() -> None:
    """Remove every wrapper logos_shift installed."""
    for name in _MODULES:
        unpatch(name)
