"""The generic ``@ls(dataset=...)`` decorator: capture any function's calls.

Built on ``wrapt.FunctionWrapper`` so methods, classmethods and staticmethods
bind exactly as undecorated ones, and introspection (name, signature,
``inspect.iscoroutinefunction``) still sees the original.  The kind of
function (sync, async, generator, async generator) is decided once, when the
decorator is applied, not per call.

Performance: the caller's thread pays the capture (``benchmarks/bench_core.py``
measures it against the bare function).  Everything per function is computed
at decoration time (:class:`Spec`), the pushed scope is reused while the
outer scope is unchanged, plain sync calls take a path without helper objects,
and the JSON work is left to the background thread.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import wrapt

from logos_shift import _guard, _ids

from . import record as _records
from . import scope as _context
from . import snapshot as _snapshot
from .generators import wrap_agen, wrap_gen

if TYPE_CHECKING:
    from .instance import Instance

F = TypeVar("F", bound=Callable[..., Any])

METADATA_KWARG = "logos_shift_metadata"
_SCALARS = (int, float, bool, type(None))

# Bound once: each saves an attribute lookup on every captured call.
_perf_counter = time.perf_counter
_time = time.time
_new_int = _ids.new_int
_scope_get = _context.SCOPE.get
_last_id_set = _context.LAST_ID.set
_should_capture = _context.should_capture
_dataset_for = _context.dataset_for
_function_call = _records.function_call


class Spec:
    """What one decorated function needs at call time, computed once."""

    __slots__ = (
        "cache", "client", "dataset", "function", "metadata", "names", "skip_first", "tail",
        "varargs",
    )  # fmt: skip

    def __init__(
        self, client: Instance, func: Callable[..., Any], dataset: str | None,
        metadata: Mapping[str, Any] | None,
    ) -> None:  # fmt: skip
        self.client = client
        self.dataset = dataset
        self.metadata = dict(metadata) if metadata else None
        target = func.__func__ if isinstance(func, (classmethod, staticmethod)) else func
        module = getattr(target, "__module__", None) or "?"
        qualname = getattr(target, "__qualname__", None) or getattr(target, "__name__", "?")
        self.function = f"{module}:{qualname}"
        names: list[str] = []
        varargs: str | None = None
        try:
            params = inspect.signature(target).parameters.values()
        except (TypeError, ValueError):
            params = iter(())  # type: ignore[assignment]
        for p in params:
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
                names.append(p.name)
            elif p.kind == p.VAR_POSITIONAL:
                varargs = p.name
        self.names = names
        self.varargs = varargs
        self.skip_first = bool(names) and names[0] in ("self", "cls")
        #: The names positional arguments map to once self/cls is set aside.
        self.tail = tuple(names[1:]) if self.skip_first else tuple(names)
        #: ``(outer scope, settings, scope)`` of the last call without
        #: call-specific metadata: the scope it pushed depends on nothing else,
        #: and a Scope is immutable, so the next such call reuses it.  One
        #: tuple, so threads racing on it always see a consistent triple.
        self.cache: tuple[object, object, _context.Scope] = (None, None, _context.Scope())

    def _arguments_slow(
        self, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> dict[str, Any]:
        """Arguments by name when some positional ones have no name (``*args``)."""
        names = self.names
        # Bound calls (instance set) don't pass self/cls in args; unbound
        # calls through the class do, and self/cls are never recorded.
        offset = 1 if self.skip_first and instance is not None else 0
        out: dict[str, Any] = {}
        for i, value in enumerate(args):
            j = i + offset
            if j < len(names):
                if j == 0 and self.skip_first:
                    continue
                out[names[j]] = value
            else:
                out.setdefault(self.varargs or "args", []).append(value)
        if kwargs:
            out.update(kwargs)
        return out

    def snapshot_arguments(
        self, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[dict[str, Any], int]:
        """Arguments by name, mutable values copied; plus an estimated size.

        The dict is new, so only non-scalar values need copying: checking
        the type inline is several times cheaper than a generic snapshot.
        """
        tail = self.tail
        # An unbound call through the class passes self/cls in args.
        pos = args[1:] if self.skip_first and instance is None else args
        if len(pos) <= len(tail):
            # The common case: every positional argument has a name.
            out = dict(zip(tail, pos))  # noqa: B905 - len(pos) <= len(tail) checked
            if kwargs:
                out.update(kwargs)
        else:
            out = self._arguments_slow(instance, args, kwargs)
        size = 2
        for k, v in out.items():
            t = type(v)
            if t is str:
                size += len(v) + len(k) + 6
            elif t in _SCALARS:
                size += len(k) + 12
            else:
                copied, n = _snapshot.snapshot(v)
                out[k] = copied
                size += n + len(k) + 4
        return out, size


class Call:
    """One in-flight capture; finishing it submits the record exactly once.

    The record built here holds only what this call knows; the background
    thread fills in the schema's other fields (see
    :func:`logos_shift._serialize.complete`).  The result is kept by
    reference and serialised on the background thread: only the *inputs*
    are snapshotted here, because callers commonly reuse their lists.
    """

    __slots__ = ("client", "id", "record", "scope", "size", "start", "submitted")

    def __init__(
        self,
        spec: Spec,
        instance: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        extra: Mapping[str, Any] | None,
    ) -> None:
        if _guard.FAULTS:
            _guard.fault("decorator.begin")
        outer = _scope_get()
        client = self.client = spec.client
        settings = client.settings
        if spec.metadata or extra:
            dataset = _dataset_for(spec.dataset, outer, client)
            merged = dict(outer.metadata)
            if spec.metadata:
                merged.update(spec.metadata)
            if extra:
                merged.update(extra)
            meta, msize = _snapshot.snapshot(merged)
            scope = _context.Scope(dataset, meta, spec.function, client)
        else:
            msize = 0
            cached = spec.cache
            if cached[0] is outer and cached[1] is settings:
                scope = cached[2]
            else:
                dataset = _dataset_for(spec.dataset, outer, client)
                scope = _context.Scope(dataset, outer.metadata, spec.function, client)
                spec.cache = (outer, settings, scope)
        inputs, size = spec.snapshot_arguments(instance, args, kwargs)
        self.scope = scope
        self.id = _new_int()
        self.record = _function_call(
            self.id, _time(), scope.dataset, spec.function, inputs, scope.metadata
        )
        self.size = size + msize + 512
        self.submitted = False
        self.start = _perf_counter()

    def finish(
        self,
        output: Any = None,
        error: BaseException | None = None,
        stream: dict[str, Any] | None = None,
        ttft: float | None = None,
    ) -> None:
        if self.submitted:
            return
        self.submitted = True
        if _guard.FAULTS:
            _guard.fault("decorator.finish")
            _guard.fault("clock")
        rec = self.record
        # Rounded on the background thread (see _serialize.complete).
        rec["latency_ms"] = (_perf_counter() - self.start) * 1000.0
        if error is not None:
            rec["error"] = _records.error_info(error)
        else:
            rec["output"] = output
        if stream is not None:
            rec["stream"] = stream
            if ttft is not None:
                rec["ttft_ms"] = (ttft - self.start) * 1000.0
        _last_id_set(self.id)
        self.client.enqueue(rec, self.size)


def begin_call(
    spec: Spec, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Call | None:
    extra = kwargs.pop(METADATA_KWARG, None) if kwargs else None
    if not _should_capture(spec.client):
        return None
    try:
        if extra is not None and not isinstance(extra, Mapping):
            extra = {"value": extra}
        return Call(spec, instance, args, kwargs, extra)
    except Exception as exc:  # noqa: BLE001 - same rule as _guard.guard, without its cost
        _guard.swallow("decorator.begin", exc)
        return None


def finish_call(call: Call | None, **kw: Any) -> None:
    if call is not None:
        with _guard.guard("decorator.finish"):
            call.finish(**kw)


def finish_ok(call: Call, result: Any) -> None:
    try:
        call.finish(result)
    except Exception as exc:  # noqa: BLE001 - same rule as _guard.guard, without its cost
        _guard.swallow("decorator.finish", exc)


def set_result_id(call: Call, result: dict[str, Any]) -> None:
    try:
        result["logos_shift_id"] = _ids.format_id(call.id)
    except Exception as exc:  # noqa: BLE001 - same rule as _guard.guard
        _guard.swallow("decorator.add_id", exc)


def _submit(
    client: Instance, rec: dict[str, Any], cid: int, start: float, size: int,
    output: Any, error: BaseException | None,
) -> None:  # fmt: skip
    """Finish a plain call's record and queue it: :meth:`Call.finish` without streams."""
    # Rounded on the background thread (see _serialize.complete).
    rec["latency_ms"] = (_perf_counter() - start) * 1000.0
    if error is not None:
        rec["error"] = _records.error_info(error)
    else:
        rec["output"] = output
    _last_id_set(cid)
    client.enqueue(rec, size)


def _call_sync(
    spec: Spec, add_id: bool, wrapped: Any, instance: Any, args: Any, kwargs: Any,
    extra: Any,
) -> Any:  # fmt: skip
    """The general path of a sync call: metadata to merge, or faults injected."""
    try:
        if extra is not None and not isinstance(extra, Mapping):
            extra = {"value": extra}
        call = Call(spec, instance, args, kwargs, extra)
    except Exception as exc:  # noqa: BLE001 - the rule of _guard.guard, inlined
        _guard.swallow("decorator.begin", exc)
        return wrapped(*args, **kwargs)
    token = _context.SCOPE.set(call.scope)
    try:
        result = wrapped(*args, **kwargs)
    except BaseException as exc:
        finish_call(call, error=exc)
        raise
    finally:
        _context.SCOPE.reset(token)
    try:
        call.finish(result)
        if add_id and type(result) is dict:
            result["logos_shift_id"] = _ids.format_id(call.id)
    except Exception as exc:  # noqa: BLE001 - the rule of _guard.guard, inlined
        _guard.swallow("decorator.finish", exc)
    return result


async def _call_async(
    spec: Spec, add_id: bool, wrapped: Any, instance: Any, args: Any, kwargs: Any,
    extra: Any,
) -> Any:  # fmt: skip
    """The general path of a coroutine call: metadata to merge, or faults injected."""
    try:
        if extra is not None and not isinstance(extra, Mapping):
            extra = {"value": extra}
        call = Call(spec, instance, args, kwargs, extra)
    except Exception as exc:  # noqa: BLE001 - the rule of _guard.guard, inlined
        _guard.swallow("decorator.begin", exc)
        return await wrapped(*args, **kwargs)
    token = _context.SCOPE.set(call.scope)
    try:
        result = await wrapped(*args, **kwargs)
    except BaseException as exc:
        finish_call(call, error=exc)
        raise
    finally:
        _context.SCOPE.reset(token)
    finish_ok(call, result)
    if add_id and type(result) is dict:
        set_result_id(call, result)
    return result


def decorate(
    client: Instance,
    func: F,
    dataset: str | None,
    metadata: Mapping[str, Any] | None,
) -> F:
    """Wrap ``func`` so each call is captured by ``client``."""
    spec = Spec(client, func, dataset, metadata)
    target = func.__func__ if isinstance(func, (classmethod, staticmethod)) else func
    add_id = client.settings.add_id_to_result
    scope_var = _context.SCOPE
    scope_set = scope_var.set
    scope_reset = scope_var.reset
    format_id = _ids.format_id
    function = spec.function
    tail = spec.tail
    n_tail = len(tail)
    skip_first = spec.skip_first
    enqueue = client.enqueue
    Scope = _context.Scope

    def begin(instance: Any, args: Any, kwargs: Any) -> tuple[Any, ...] | None:
        """The plain path's start of a call, for coroutine functions.

        Returns ``(scope, record, id, size, start)``, or None when the
        capture could not start.  Plain sync calls run the same code inlined
        in ``sync_wrapper``; keep the two (and :class:`Call`) in step.
        """
        try:
            outer = _scope_get()
            settings = client.settings
            cached = spec.cache
            if cached[0] is outer and cached[1] is settings:
                scope = cached[2]
            else:
                dataset = _dataset_for(spec.dataset, outer, client)
                scope = Scope(dataset, outer.metadata, function, client)
                spec.cache = (outer, settings, scope)
            inputs, size = spec.snapshot_arguments(instance, args, kwargs)
            cid = _new_int()
            rec = _function_call(cid, _time(), scope.dataset, function, inputs, scope.metadata)
            return scope, rec, cid, size + 512, _perf_counter()
        except Exception as exc:  # noqa: BLE001 - the rule of _guard.guard, inlined
            _guard.swallow("decorator.begin", exc)
            return None

    if inspect.isasyncgenfunction(target):

        def agen_wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
            call = begin_call(spec, instance, args, kwargs)
            return wrap_agen(wrapped(*args, **kwargs), call, finish_call)

        return wrapt.FunctionWrapper(func, agen_wrapper)  # type: ignore[return-value]

    if inspect.isgeneratorfunction(target):

        def gen_wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
            call = begin_call(spec, instance, args, kwargs)
            return wrap_gen(wrapped(*args, **kwargs), call, finish_call)

        return wrapt.FunctionWrapper(func, gen_wrapper)  # type: ignore[return-value]

    if inspect.iscoroutinefunction(target):

        async def async_wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
            extra = kwargs.pop(METADATA_KWARG, None) if kwargs else None
            if not _should_capture(client):
                return await wrapped(*args, **kwargs)
            if extra is not None or spec.metadata or _guard.FAULTS:
                return await _call_async(spec, add_id, wrapped, instance, args, kwargs, extra)
            started = begin(instance, args, kwargs)
            if started is None:
                return await wrapped(*args, **kwargs)
            scope, rec, cid, size, start = started
            token = scope_set(scope)
            try:
                result = await wrapped(*args, **kwargs)
            except BaseException as exc:
                try:
                    _submit(client, rec, cid, start, size, None, exc)
                except Exception as err:  # noqa: BLE001 - the rule of _guard.guard, inlined
                    _guard.swallow("decorator.finish", err)
                raise
            finally:
                scope_reset(token)
            try:
                _submit(client, rec, cid, start, size, result, None)
            except Exception as exc:  # noqa: BLE001 - the rule of _guard.guard, inlined
                _guard.swallow("decorator.finish", exc)
            if add_id and type(result) is dict:
                try:
                    result["logos_shift_id"] = format_id(cid)
                except Exception as exc:  # noqa: BLE001 - the rule of _guard.guard
                    _guard.swallow("decorator.add_id", exc)
            return result

        return wrapt.FunctionWrapper(func, async_wrapper)  # type: ignore[return-value]

    def sync_wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        # The most common kind of call gets a path with no helper objects:
        # begin_call(), Call and Call.finish() inlined (each Python-level call
        # or object costs ~0.1 µs).  Per-call metadata, decorator metadata
        # and injected faults take the general path; records are the same.
        extra = kwargs.pop(METADATA_KWARG, None) if kwargs else None
        if not _should_capture(client):
            return wrapped(*args, **kwargs)
        if extra is not None or spec.metadata or _guard.FAULTS:
            return _call_sync(spec, add_id, wrapped, instance, args, kwargs, extra)
        try:
            outer = _scope_get()
            settings = client.settings
            cached = spec.cache
            if cached[0] is outer and cached[1] is settings:
                scope = cached[2]
            else:
                dataset = _dataset_for(spec.dataset, outer, client)
                scope = Scope(dataset, outer.metadata, function, client)
                spec.cache = (outer, settings, scope)
            # spec.snapshot_arguments() inlined.
            pos = args[1:] if skip_first and instance is None else args
            if len(pos) <= n_tail:
                inputs = dict(zip(tail, pos))  # noqa: B905 - lengths checked
                if kwargs:
                    inputs.update(kwargs)
            else:
                inputs = spec._arguments_slow(instance, args, kwargs)
            size = 514  # 2 for the braces, 512 for the envelope (as in Call)
            for k, v in inputs.items():
                t = type(v)
                if t is str:
                    size += len(v) + len(k) + 6
                elif t in _SCALARS:
                    size += len(k) + 12
                else:
                    copied, n = _snapshot.snapshot(v)
                    inputs[k] = copied
                    size += n + len(k) + 4
            cid = _new_int()
            rec = _function_call(cid, _time(), scope.dataset, function, inputs, scope.metadata)
            start = _perf_counter()
        except Exception as exc:  # noqa: BLE001 - the rule of _guard.guard, inlined
            _guard.swallow("decorator.begin", exc)
            return wrapped(*args, **kwargs)
        token = scope_set(scope)
        try:
            result = wrapped(*args, **kwargs)
        except BaseException as exc:
            try:
                _submit(client, rec, cid, start, size, None, exc)
            except Exception as err:  # noqa: BLE001 - the rule of _guard.guard, inlined
                _guard.swallow("decorator.finish", err)
            raise
        finally:
            scope_reset(token)
        try:
            # _submit() inlined.  Rounded on the background thread.
            rec["latency_ms"] = (_perf_counter() - start) * 1000.0
            rec["output"] = result
            _last_id_set(cid)
            enqueue(rec, size)
            if add_id and type(result) is dict:
                result["logos_shift_id"] = format_id(cid)
        except Exception as exc:  # noqa: BLE001 - the rule of _guard.guard, inlined
            _guard.swallow("decorator.finish", exc)
        return result

    return wrapt.FunctionWrapper(func, sync_wrapper)  # type: ignore[return-value]
