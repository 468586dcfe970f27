"""A/B routing for decorated functions ("any API, not only LLMs").

``@ls(dataset="search", variants={"v2": search_v2})`` registers alternative
implementations by name.  A route whose variant names ``"callable": "v2"``
sends its share of units to ``search_v2``; the rest call the original.  The
same assignment, breaker and fallback rules as for SDK calls apply: when the
variant raises and the variant has ``fallback`` on, the original is called
once more and the record keeps the variant's error with ``fallback: true``.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import wrapt

from logos_shift import _guard

from . import record as _records
from .decorator import Spec, begin_call, finish_call, finish_ok, set_result_id
from .scope import SCOPE

if TYPE_CHECKING:
    from logos_shift.routing.decision import Decision

    from .decorator import Call
    from .instance import Instance

F = TypeVar("F", bound=Callable[..., Any])


def choose(
    call: Call, variants: Mapping[str, Callable[..., Any]]
) -> tuple[Decision, Callable[..., Any]] | None:
    """Pick the variant callable for this call, or None to call the original."""
    router = call.client.router
    if router is None:
        return None
    result: tuple[Decision, Callable[..., Any]] | None = None
    with _guard.guard("router.function"):
        scope = call.scope
        decision = router.decide(scope.dataset, None, scope.metadata)
        if decision is None:
            return None
        rec = call.record
        rec["route"] = decision.route
        rec["variant"] = decision.variant
        if decision.is_variant and decision.callable is not None:
            fn = variants.get(decision.callable)
            if fn is not None:
                result = (decision, fn)
    return result


def call_sync(
    call: Call,
    choice: tuple[Decision, Callable[..., Any]],
    wrapped: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    """Run the variant; on failure fall back to ``wrapped`` if allowed."""
    decision, fn = choice
    try:
        result = fn(*args, **kwargs)
    except Exception as exc:
        _record(call, decision, ok=False)
        if not decision.fallback:
            raise
        _mark_fallback(call, exc)
        return wrapped(*args, **kwargs)
    _record(call, decision, ok=True)
    return result


async def call_async(
    call: Call,
    choice: tuple[Decision, Callable[..., Any]],
    wrapped: Callable[..., Awaitable[Any]],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    """Async twin of :func:`call_sync`."""
    decision, fn = choice
    try:
        result = await fn(*args, **kwargs)
    except Exception as exc:
        _record(call, decision, ok=False)
        if not decision.fallback:
            raise
        _mark_fallback(call, exc)
        return await wrapped(*args, **kwargs)
    _record(call, decision, ok=True)
    return result


def _record(call: Call, decision: Decision, ok: bool) -> None:
    router = call.client.router
    if router is not None:
        with _guard.guard("router.record"):
            router.record_result(decision.route, decision.variant, ok)


def _mark_fallback(call: Call, exc: BaseException) -> None:
    with _guard.guard("router.fallback"):
        # The record keeps the variant's error next to the control's output,
        # so the failure counts against the variant (fallbacks are variant errors).
        call.record["fallback"] = True
        call.record["error"] = _records.error_info(exc)


def decorate_routed(
    client: Instance, func: F, dataset: str | None, metadata: Mapping[str, Any] | None,
    variants: Mapping[str, Callable[..., Any]],
) -> F:  # fmt: skip
    """Like :func:`~logos_shift._capture.decorator.decorate`, routing to ``variants`` too.

    Args:
        client: the instance the calls are captured by.
        dataset: the decorator's dataset.
        metadata: the decorator's metadata.
        func: the original function (or classmethod/staticmethod).
        variants: alternative implementations by name.

    Returns:
        The wrapper.

    Raises:
        TypeError: ``func`` is a generator function (not routable).
    """

    spec = Spec(client, func, dataset, metadata)
    variants = dict(variants)
    target = func.__func__ if isinstance(func, (classmethod, staticmethod)) else func
    add_id = spec.client.settings.add_id_to_result
    scope_var = SCOPE
    if inspect.isgeneratorfunction(target) or inspect.isasyncgenfunction(target):
        raise TypeError("variants are supported for plain and async functions, not generators")

    if inspect.iscoroutinefunction(target):

        async def async_wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
            call = begin_call(spec, instance, args, kwargs)
            choice = choose(call, variants) if call is not None else None
            token = scope_var.set(call.scope) if call is not None else None
            try:
                if choice is not None and call is not None:
                    result = await call_async(call, choice, wrapped, args, kwargs)
                else:
                    result = await wrapped(*args, **kwargs)
            except BaseException as exc:
                finish_call(call, error=exc)
                raise
            finally:
                if token is not None:
                    scope_var.reset(token)
            if call is not None:
                finish_ok(call, result)
                if add_id and type(result) is dict:
                    set_result_id(call, result)
            return result

        return wrapt.FunctionWrapper(func, async_wrapper)  # type: ignore[return-value]

    def sync_wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        call = begin_call(spec, instance, args, kwargs)
        choice = choose(call, variants) if call is not None else None
        token = scope_var.set(call.scope) if call is not None else None
        try:
            if choice is not None and call is not None:
                result = call_sync(call, choice, wrapped, args, kwargs)
            else:
                result = wrapped(*args, **kwargs)
        except BaseException as exc:
            finish_call(call, error=exc)
            raise
        finally:
            if token is not None:
                scope_var.reset(token)
        if call is not None:
            finish_ok(call, result)
            if add_id and type(result) is dict:
                set_result_id(call, result)
        return result

    return wrapt.FunctionWrapper(func, sync_wrapper)  # type: ignore[return-value]
