"""A/B routing for decorated functions ("any API, not only LLMs").

``@ls(dataset="search", variants={"v2": search_v2})`` registers alternative
implementations by name.  A route whose variant names ``"callable": "v2"``
sends its share of units to ``search_v2``; the rest call the original.  The
same assignment, breaker and fallback rules as for SDK calls apply: when the
variant raises and the variant has ``fallback`` on, the original is called
once more and the record keeps the variant's error with ``fallback: true``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from . import _guard, _records

if TYPE_CHECKING:
    from ._decision import Decision
    from ._decorator import _Call


def choose(
    call: _Call, variants: Mapping[str, Callable[..., Any]]
) -> tuple[Decision, Callable[..., Any]] | None:
    """Pick the variant callable for this call, or None to call the original."""
    router = call.client._router
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
    call: _Call,
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
    call: _Call,
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


def _record(call: _Call, decision: Decision, ok: bool) -> None:
    router = call.client._router
    if router is not None:
        with _guard.guard("router.record"):
            router.record_result(decision.route, decision.variant, ok)


def _mark_fallback(call: _Call, exc: BaseException) -> None:
    with _guard.guard("router.fallback"):
        # The record keeps the variant's error next to the control's output,
        # so the failure counts against the variant (DESIGN: fallbacks are
        # variant errors).
        call.record["fallback"] = True
        call.record["error"] = _records.error_info(exc)
