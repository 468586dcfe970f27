"""Call-time snapshots of inputs, cheap enough for the caller's thread.

A capture must record what the caller passed *at call time*, even if the caller
later appends to or replaces its ``messages`` list.  Serialising on the
caller's thread would guarantee that but costs tens of microseconds for a large
payload, so instead the mutable containers (dicts, lists, sets, bytearrays) are
copied here and everything else is kept by reference; the background thread
serialises the copy.  Leaves that are immutable (str, numbers, tuples of them)
need no copy.  The walk also returns an estimate of the JSON size, used for the
memory bound.

An SDK's "argument not given" placeholders (``omit``, ``NOT_GIVEN``: the types in
``skip``) are left out, at any depth, as the SDK leaves them out of the request body.
"""

from __future__ import annotations

from typing import Any

_MAX_DEPTH = 32
_SCALARS = (str, int, float, bool, type(None))
_NOTHING: frozenset[type] = frozenset()
#: What :func:`_copy` returns for a placeholder: its container leaves the item out.
_LEFT_OUT = object()


def snapshot(value: Any, skip: frozenset[type] = _NOTHING) -> tuple[Any, int]:
    """Copy ``value``'s mutable containers; return ``(copy, estimated_bytes)``.

    Args:
        value: the call's keyword arguments (or any value).
        skip: placeholder types: a dict item or list element of one of them is left out.

    Returns:
        The copy (``None`` if ``value`` itself is a placeholder) and its estimated JSON size.
    """
    size = [0]
    out = _copy(value, size, 0, set(), skip)
    return (None if out is _LEFT_OUT else out), size[0]


def _copy(value: Any, size: list[int], depth: int, active: set[int], skip: frozenset[type]) -> Any:
    cls = type(value)
    if cls is str:
        size[0] += len(value) + 2
        return value
    if cls in _SCALARS:
        size[0] += 8
        return value
    if depth >= _MAX_DEPTH:
        size[0] += 16
        return value
    if cls is dict:
        return _copy_dict(value, size, depth, active, skip)
    if cls is list or cls is tuple or cls is set or cls is frozenset:
        key = id(value)
        if key in active:
            # A cycle: keep the reference; the serialiser prints a placeholder.
            return value
        active.add(key)
        try:
            # Leaves inline and dicts straight to _copy_dict: a function call
            # per item costs more than the copy itself (chat messages are a
            # list of small dicts).
            n = 2
            items: list[Any] = []
            append = items.append
            child = depth + 1
            for v in value:
                vt = type(v)
                if vt is str:
                    n += len(v) + 2
                    append(v)
                elif vt in _SCALARS:
                    n += 8
                    append(v)
                elif vt is dict and child < _MAX_DEPTH:
                    append(_copy_dict(v, size, child, active, skip))
                else:
                    c = _copy(v, size, child, active, skip)
                    if c is not _LEFT_OUT:
                        append(c)
            size[0] += n
            if cls is list:
                return items
            if cls is tuple:
                return tuple(items)
            return items  # sets become lists, as in JSON
        finally:
            active.discard(key)
    if cls is bytes or cls is bytearray or cls is memoryview:
        n = len(value)
        size[0] += n * 4 // 3 + 16
        return bytes(value)
    if cls in skip:
        return _LEFT_OUT
    # Other objects (pydantic models, dataclasses, SDK types) are kept by
    # reference and serialised later; a flat estimate keeps the bound honest
    # enough without walking them here.
    size[0] += 256
    return value


def _copy_dict(
    value: dict[Any, Any], size: list[int], depth: int, active: set[int], skip: frozenset[type]
) -> Any:
    """:func:`_copy` of a plain dict (``depth`` below the limit)."""
    key = id(value)
    if key in active:
        # A cycle: keep the reference; the serialiser prints a placeholder.
        return value
    # One pass sizes the leaves and finds the values that need a copy of
    # their own; the dict itself is copied in C.  Most dicts (messages,
    # options) hold only leaves and never touch ``active``.
    n = 2
    nested: list[tuple[Any, Any]] | None = None
    for k, v in value.items():
        n += (len(k) if type(k) is str else 8) + 4
        vt = type(v)
        if vt is str:
            n += len(v) + 2
        elif vt in _SCALARS:
            n += 8
        elif nested is None:
            nested = [(k, v)]
        else:
            nested.append((k, v))
    d = dict(value)
    if nested is not None:
        active.add(key)
        try:
            child = depth + 1
            for k, v in nested:
                c = _copy(v, size, child, active, skip)
                if c is _LEFT_OUT:
                    del d[k]
                else:
                    d[k] = c
        finally:
            active.discard(key)
    size[0] += n
    return d
