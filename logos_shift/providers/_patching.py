"""Install and remove a provider's wrappers (the wrapt glue).

One wrapper per patch target, built from the provider's declarative data
(:mod:`logos_shift.providers.base`) by :mod:`logos_shift._capture.call`.
Installing twice is a no-op; removing takes out exactly our wrappers, also
from under another library's wrapper stacked on top.
"""

from __future__ import annotations

import functools
import gc
import threading
import types
import warnings
from collections.abc import Callable
from importlib import import_module, metadata
from typing import Any

import wrapt

from logos_shift import _guard
from logos_shift._capture.call import (
    RECORD_ID,
    Sdk,
    make_async,
    make_generator,
    make_manager,
    make_sync,
)

from .base import Provider, parse_version

_lock = threading.RLock()
#: provider name → the (owner class, method name, wrapt handle) it installed.
_installed: dict[str, list[tuple[type, str, Any]]] = {}
_warned: set[str] = set()
_BOUND = wrapt.BoundFunctionWrapper


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
        sdk = _sdk(pkg, prov, version)
        handles: list[tuple[type, str, Any]] = []
        for t in prov.targets:
            try:
                owner = getattr(import_module(t.module), t.cls)
            except (ImportError, AttributeError):
                continue  # not in this SDK version (e.g. openai 1.x has no chat parse)
            if t.method not in vars(owner) or is_ours(vars(owner)[t.method]):
                continue
            if t.kind == "stream_manager":
                fn = make_manager(prov, t, sdk)
            elif t.kind == "generator":
                fn = make_generator(prov, t, sdk)
            elif t.is_async:
                fn = make_async(prov, t, sdk)
            else:
                fn = make_sync(prov, t, sdk)
            handle = wrapt.wrap_function_wrapper(owner, t.method, _mark(fn))
            handles.append((owner, t.method, handle))
        _installed[name] = handles
        _install_record_id(pkg, prov)
        _rebind_cached(handles, restore=False)
        return True


def _classes(pkg: Any, names: tuple[str, ...]) -> tuple[type, ...]:
    found = (getattr(pkg, n, None) for n in names)
    return tuple(c for c in found if isinstance(c, type))


def _sdk(pkg: Any, prov: Provider, version: str) -> Sdk:
    """What the wrappers need of the installed SDK, its names resolved once."""
    return Sdk(
        info={"name": prov.dist, "version": version},
        stream_types=_classes(pkg, prov.stream_classes),
        placeholders=frozenset(_classes(pkg, prov.placeholders)),
        was_sent=prov.was_sent,
    )


def _install_record_id(pkg: Any, prov: Provider) -> None:
    """Put the ``logos_shift_id`` descriptor on the SDK's response base class.

    It stays after unpatching: a response captured before keeps its id, and one
    that was not captured has none (``AttributeError``, as without logos_shift).
    """
    with _guard.guard("set_id"):
        base = _classes(pkg, (prov.model_base,)) if prov.model_base else ()
        if base and vars(base[0]).get("logos_shift_id") is not RECORD_ID:
            # type.__setattr__: pydantic's metaclass would treat it as a field default.
            type.__setattr__(base[0], "logos_shift_id", RECORD_ID)


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
    """Point the bound methods taken before (un)patching at the method as it is now.

    A bound method taken before ``patch_all()`` (``create =
    client.chat.completions.create``, kept by instructor's ``from_openai``, or by
    the SDK's own cached ``with_raw_response`` objects) calls the original
    function; a class-level patch never sees those calls.  Every reference to
    such a bound method that can be rewritten in place (a closure cell, a dict,
    a list, an object's attributes, a ``functools.partial``) is pointed at the
    patched one, and back at the original when unpatching.
    """
    owners = {(owner, method) for owner, method, _ in handles}
    originals = {getattr(h, "__wrapped__", None) for _, _, h in handles}
    stale: dict[int, Any] = {}
    with _guard.guard("rebind_cached"):
        # type(obj), never isinstance(): that reads obj.__class__, which the SDKs' lazy
        # module proxies answer by importing (anthropic's vertex extra, google-auth).
        for obj in gc.get_objects():
            cls = type(obj)
            if restore:
                if issubclass(cls, _BOUND) and is_ours(obj):
                    self_ = obj.__self__
                    if any(isinstance(self_, o) and obj.__name__ == m for o, m in owners):
                        stale[id(obj)] = obj
            elif cls is types.MethodType and obj.__func__ in originals:
                stale[id(obj)] = obj
            elif issubclass(cls, _BOUND) and getattr(obj, "_self_parent", None) in originals:
                # bound through another library's wrapper that we wrapped in turn
                stale[id(obj)] = obj
        if not stale:
            return
        fresh = {
            key: (m.__wrapped__ if restore else getattr(m.__self__, m.__name__))
            for key, m in stale.items()
        }
        found = list(stale.values())
        for ref in gc.get_referrers(*found):
            if ref is stale or ref is fresh or ref is found:
                continue
            with _guard.guard("rebind_cached"):
                _replace_in(ref, stale, fresh)


def _replace_in(ref: Any, stale: dict[int, Any], fresh: dict[int, Any]) -> None:
    """Replace, inside ``ref``, each object of ``stale`` by its ``fresh`` counterpart."""

    def swap(value: Any) -> Any:
        key = id(value)
        return fresh.get(key, value) if stale.get(key) is value else value

    kind = type(ref)  # never isinstance() or getattr() on ref: it may be a lazy proxy
    if kind is types.CellType:
        ref.cell_contents = swap(ref.cell_contents)
    elif kind is dict:
        for k, v in list(ref.items()):
            new = swap(v)
            if new is not v:
                ref[k] = new
    elif kind is list:
        ref[:] = [swap(v) for v in ref]
    elif kind is functools.partial:
        new = swap(ref.func)
        if new is not ref.func:
            ref.__setstate__((new, ref.args, ref.keywords, vars(ref) or None))
    elif not issubclass(kind, type):
        try:
            attrs = object.__getattribute__(ref, "__dict__")
        except AttributeError:
            return
        for k, v in list(attrs.items()):
            new = swap(v)
            if new is not v:
                attrs[k] = new
