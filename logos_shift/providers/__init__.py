"""Providers: the SDKs logos_shift patches, one declarative module per SDK.

Each module (:mod:`.openai`, :mod:`.anthropic`) defines a ``PROVIDER``: the
methods to patch, the supported version range and how to read the SDK's
requests, responses and stream chunks.  The contract is in :mod:`.base`; the
wrapping, stream and guard machinery that uses it lives in the capture core
(:mod:`logos_shift._capture`) and :mod:`._patching`.  A provider module is
imported only when its SDK is patched.

Providers are plugins: another distribution adds one by declaring an entry
point in the ``logos_shift.providers`` group whose value names its
:class:`Provider` (``"my_pkg.logos:PROVIDER"``); :func:`register` does the
same at run time.  Either way ``patch(name)``, ``unpatch(name)`` and
``patch_all()`` then cover it, and ``tests/contract/`` shows the rules a
provider inherits.
"""

from __future__ import annotations

import logging
from importlib import import_module
from importlib.metadata import entry_points

from . import _patching
from ._patching import is_ours
from .base import Provider, Target

__all__ = [
    "Provider",
    "Target",
    "is_ours",
    "patch",
    "patch_all",
    "patch_anthropic",
    "patch_google_genai",
    "patch_openai",
    "patched",
    "providers",
    "register",
    "unpatch",
    "unpatch_all",
    "unpatch_anthropic",
    "unpatch_google_genai",
    "unpatch_openai",
    "unregister",
]

#: Built-in providers: name → ``"module:attribute"`` of their :class:`Provider`.
_BUILTIN: dict[str, str] = {
    "openai": "logos_shift.providers.openai:PROVIDER",
    "anthropic": "logos_shift.providers.anthropic:PROVIDER",
    "google_genai": "logos_shift.providers.google_genai:PROVIDER",
}


logger = logging.getLogger("logos_shift")

#: The entry-point group other distributions declare their providers in.
ENTRY_POINT_GROUP = "logos_shift.providers"
_registered: dict[str, str | Provider] = {}


def register(name: str, provider: str | Provider) -> None:
    """Make a provider known by name (what an entry point does, at run time).

    Args:
        name: the provider's name, as given to :func:`patch`.
        provider: its :class:`Provider`, or ``"module:attribute"`` naming it
            (imported only when the provider is patched).
    """
    _registered[name] = provider


def unregister(name: str) -> None:
    """Forget a provider added with :func:`register` (unpatching it first)."""
    unpatch(name)
    _registered.pop(name, None)


def _table() -> dict[str, str | Provider]:
    table: dict[str, str | Provider] = dict(_BUILTIN)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        table.setdefault(ep.name, ep.value)
    table.update(_registered)
    return table


def providers() -> list[str]:
    """Return the names of every known provider: built-in, entry points, registered."""
    return sorted(_table())


def _load(name: str) -> Provider:
    try:
        ref = _table()[name]
    except KeyError:
        known = ", ".join(providers())
        raise ValueError(f"unknown provider {name!r}; known providers: {known}") from None
    if not isinstance(ref, str):
        return ref
    module, _, attr = ref.partition(":")
    prov: Provider = getattr(import_module(module), attr)
    return prov


def patch(name: str, explicit: bool = True) -> bool:
    """Install the wrappers of provider ``name`` (idempotent).

    Args:
        name: ``"openai"``, ``"anthropic"``, ``"google_genai"``, or a provider added
            by an entry point or :func:`register`.
        explicit: raise ImportError when the SDK is missing (else return False).

    Returns:
        True if the provider is patched after the call.

    Raises:
        ImportError: ``explicit`` and the SDK is not installed.
        ValueError: no provider has this name.
    """
    if explicit:
        return _patching.install(name, _load(name), explicit)
    try:
        prov = _load(name)
    except ImportError as exc:  # a plugin whose module cannot be imported: skipped, said once
        logger.warning("logos_shift: provider %r cannot be loaded (%s); not patched", name, exc)
        return False
    return _patching.install(name, prov, explicit)


def unpatch(name: str) -> None:
    """Remove provider ``name``'s wrappers; other libraries' wrappers stay.

    Args:
        name: ``"openai"``, ``"anthropic"`` or ``"google_genai"``.
    """
    _patching.uninstall(name)


def patched() -> list[str]:
    """Return the names of the providers patched now."""
    return _patching.patched()


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


def patch_google_genai() -> None:
    """Capture every Gemini call of the google-genai SDK (>=1.20,<4).

    Covers ``models.generate_content`` / ``generate_content_stream`` /
    ``embed_content``, sync and ``client.aio``, and chats (``send_message`` /
    ``send_message_stream`` go through them).  Patching twice is a no-op.

    Raises:
        ImportError: the google-genai package is not installed.
    """
    patch("google_genai")


def patch_all() -> list[str]:
    """Patch every installed, supported SDK; missing ones are skipped quietly.

    Returns:
        The names of the providers patched after the call.
    """
    for name in providers():
        patch(name, explicit=False)
    return patched()


def unpatch_openai() -> None:
    """Remove logos_shift's openai wrappers (other libraries' wrappers stay)."""
    unpatch("openai")


def unpatch_anthropic() -> None:
    """Remove logos_shift's anthropic wrappers (other libraries' wrappers stay)."""
    unpatch("anthropic")


def unpatch_google_genai() -> None:
    """Remove logos_shift's google-genai wrappers (other libraries' wrappers stay)."""
    unpatch("google_genai")


def unpatch_all() -> None:
    """Remove every wrapper logos_shift installed."""
    for name in patched():
        unpatch(name)
