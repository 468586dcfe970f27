"""Turn anything into JSON, on the background thread, without ever raising.

The caller's objects can be anything: pydantic models, dataclasses, bytes,
datetimes, enums, sets, numpy values, cyclic structures, objects whose
``__repr__`` raises.  :func:`to_jsonable` maps each to a JSON value or a
placeholder string and counts the placeholders; :func:`encode_record` adds the
size cap, truncating the largest strings (head and tail kept) rather than
dropping the record.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as _dt
import enum
import json
import math
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from decimal import Decimal
from pathlib import PurePath
from typing import Any

from logos_shift import _guard

_MAX_DEPTH = 64
_SCALARS = (str, int, bool, type(None))

#: Placeholders emitted in this process, by kind (e.g. ``cycle``, ``repr_error``).
PLACEHOLDERS: Counter[str] = Counter()

#: Test hook: when set, called with the JSON of every record encoded for any sink
#: (before the size cap).  The test suite uses it to fail a test whose records
#: hold ``<… object at 0x…>``; None in production.
ON_ENCODED: Callable[[bytes], None] | None = None


def to_jsonable(value: Any) -> Any:
    """Return a JSON-compatible copy of ``value``; never raises."""
    return _conv(value, 0, set())


def _placeholder(kind: str, value: Any) -> str:
    PLACEHOLDERS[kind] += 1
    return f"<{kind}:{type(value).__name__}>"


def _conv(value: Any, depth: int, active: set[int]) -> Any:
    cls = type(value)
    if cls in _SCALARS:
        return value
    if cls is float:
        return value if math.isfinite(value) else str(value)
    if depth >= _MAX_DEPTH:
        return _placeholder("max_depth", value)
    if cls is dict or cls is list or cls is tuple or isinstance(value, (Mapping, list, tuple)):
        key = id(value)
        if key in active:
            return _placeholder("cycle", value)
        active.add(key)
        try:
            if isinstance(value, Mapping):
                out: dict[str, Any] = {}
                for k, v in value.items():
                    out[k if type(k) is str else _key(k)] = _conv(v, depth + 1, active)
                return out
            return [_conv(v, depth + 1, active) for v in value]
        finally:
            active.discard(key)
    if isinstance(value, (set, frozenset)):
        items = [_conv(v, depth + 1, active) for v in value]
        try:
            items.sort(key=lambda x: json.dumps(x, sort_keys=True, default=str))
        except Exception:  # noqa: BLE001 - order is cosmetic
            pass
        return items
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return {"_type": "bytes", "base64": base64.b64encode(raw).decode("ascii")}
    if isinstance(value, str):
        return str(value)
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        f = float(value)
        return f if math.isfinite(f) else str(f)
    if isinstance(value, enum.Enum):
        return _conv(value.value, depth + 1, active)
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return value.isoformat()
    if isinstance(value, _dt.timedelta):
        return value.total_seconds()
    if isinstance(value, (uuid.UUID, Decimal, PurePath)):
        return str(value)
    return _conv_object(value, depth, active)


def _conv_object(value: Any, depth: int, active: set[int]) -> Any:
    key = id(value)
    if key in active:
        return _placeholder("cycle", value)
    active.add(key)
    try:
        dumped = _dump(value)
        if dumped is not _NOTHING:
            return _conv(dumped, depth + 1, active)
    except Exception:  # noqa: BLE001 - fall through to repr
        pass
    finally:
        active.discard(key)
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - a raising __repr__ gets a placeholder
        return _placeholder("repr_error", value)
    PLACEHOLDERS["repr"] += 1
    return text


_NOTHING = object()


def _dump(value: Any) -> Any:
    """Structured view of rich objects (pydantic, dataclasses, numpy)."""
    model_dump = getattr(value, "model_dump", None)
    if callable(model_dump) and not isinstance(value, type):
        try:
            return model_dump(mode="json", warnings=False)
        except TypeError:
            return model_dump()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name, None) for f in dataclasses.fields(value)}
    module = type(value).__module__
    if module.startswith("numpy"):
        tolist = getattr(value, "tolist", None)
        if callable(tolist):
            return tolist()
    for attr in ("to_dict", "dict", "_asdict"):
        fn = getattr(value, attr, None)
        if callable(fn) and not isinstance(value, type):
            try:
                return fn()
            except TypeError:
                continue
    return _NOTHING


def _key(k: Any) -> str:
    try:
        return k.value if isinstance(k, enum.Enum) and isinstance(k.value, str) else str(k)
    except Exception:  # noqa: BLE001 - keys with broken __str__
        return _placeholder("key_error", k)


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON of an already JSON-compatible value."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def encode_record(record: dict[str, Any], max_bytes: int) -> bytes:
    """Serialise one complete record to a JSON line (without newline), capped in size.

    A record over ``max_bytes`` is truncated (largest strings shortened, then
    long lists), never dropped; ``metadata["logos_shift.truncated_bytes"]``
    then holds the original size.
    """
    _guard.fault("serialize")
    tree = to_jsonable(record)
    data = dumps(tree)
    if ON_ENCODED is not None:
        ON_ENCODED(data)
    if len(data) <= max_bytes:
        return data
    return _truncate(tree, len(data), max_bytes)


def _truncate(tree: dict[str, Any], size: int, max_bytes: int) -> bytes:
    meta = tree.get("metadata")
    if not isinstance(meta, dict):
        meta = {}
        tree["metadata"] = meta
    meta["logos_shift.truncated_bytes"] = size
    limit = max(max_bytes // 4, 64)
    while limit >= 64:
        shortened = _shorten(tree, limit)
        data = dumps(shortened)
        if len(data) <= max_bytes:
            return data
        limit //= 4
    # Pathological shapes (millions of tiny items): keep the envelope only.
    for field in ("input", "output"):
        if field in tree:
            tree[field] = {"_truncated": True}
    data = dumps(tree)
    if len(data) <= max_bytes:
        return data
    envelope = {k: tree.get(k) for k in ("schema", "type", "id", "ts", "dataset", "source")}
    envelope["metadata"] = {"logos_shift.truncated_bytes": size}
    return dumps(envelope)


def _shorten(value: Any, limit: int) -> Any:
    if isinstance(value, str):
        if len(value) <= limit:
            return value
        half = limit // 2
        return f"{value[:half]}…[truncated {len(value) - 2 * half} chars]…{value[-half:]}"
    if isinstance(value, dict):
        return {k: _shorten(v, limit) for k, v in value.items()}
    if isinstance(value, list):
        items = (
            value
            if len(value) <= limit
            else [*value[: limit // 2], f"…[{len(value) - limit // 2} items truncated]"]
        )
        return [_shorten(v, limit) for v in items]
    return value
