"""Install and remove a provider's wrappers (the wrapt glue).

One wrapper per patch target, built from the provider's declarative data
(:mod:`logos_shift.providers.base`) by :mod:`logos_shift._capture.call`.
Installing twice is a no-op; removing takes out exactly our wrappers, also
from under another library's wrapper stacked on top.
"""

from __future__ import annotations

import gc
import threading
import warnings
from collections.abc import Callable
from importlib import import_module, metadata
from typing import Any

import wrapt

from logos_shift import _guard
from logos_shift._capture.call import make_async, make_generator, make_manager, make_sync

from .base import Provider, parse_version

_lock = threading.RLock()
#: provider name → the (owner class, method name, wrapt handle) it installed.
_installed: dict[str, list[tuple[type, str, Any]]] = {}
_warned: set[str] = set()


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


def install(name: str, prov: Provider, explicit: bool = True) -> bool:
    """Install the wrappers of provider ``prov`` under ``name`` (idempotent).

    Args:
        name: the provider's registered name.
        prov: the provider.
        explicit: raise ImportError when the SDK is missing (else return False).

    Returns:
        True if the provider is patched after the call.

    Raises:
        ImportError: ``explicit`` and the SDK is not installed.
    """
    with _lock:
        if name in _installed:
            return True
        try:
            pkg = import_module(prov.package)
        except ImportError as exc:
            if explicit:
                raise ImportError(
                    f"logos_shift.patch_{name}() needs the {prov.package!r} package "
                    f"(pip install 'logos-shift[{prov.dist}]')"
                ) from exc
            return False
        try:
            version = metadata.version(prov.dist)
        except metadata.PackageNotFoundError:
            version = str(getattr(pkg, "__version__", "0"))
        v = parse_version(version)
        if not prov.min_version <= v < prov.max_version:
            if name not in _warned:
                _warned.add(name)
                lo = ".".join(map(str, prov.min_version))
                hi = ".".join(map(str, prov.max_version))
                warnings.warn(
                    f"logos_shift supports {prov.dist} >={lo},<{hi}; {version} is installed, "
                    f"so {prov.dist} calls are not captured",
                    UserWarning,
                    stacklevel=3,
                )
            return False
        types = tuple(getattr(pkg, n) for n in prov.stream_types)
        sdk = {"name": prov.dist, "version": version}
        handles: list[tuple[type, str, Any]] = []
        for t in prov.targets:
            try:
                owner = getattr(import_module(t.module), t.cls)
            except (ImportError, AttributeError):
                continue  # not in this SDK version (e.g. openai 1.x has no chat parse)
            if t.method not in vars(owner) or is_ours(vars(owner)[t.method]):
                continue
            if t.kind == "stream_manager":
                fn = make_manager(prov, t, types, sdk)
            elif t.kind == "generator":
                fn = make_generator(prov, t, types, sdk)
            elif t.is_async:
                fn = make_async(prov, t, types, sdk)
            else:
                fn = make_sync(prov, t, types, sdk)
            handle = wrapt.wrap_function_wrapper(owner, t.method, _mark(fn))
            handles.append((owner, t.method, handle))
        _installed[name] = handles
        _rebind_cached(handles, restore=False)
        return True


def uninstall(name: str) -> None:
    """Remove provider ``name``'s wrappers; other libraries' wrappers stay.

    Args:
        name: the provider's registered name.
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
