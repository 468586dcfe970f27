"""Built-in providers: one module per SDK, each declarative (see ``_base``)."""

from __future__ import annotations

from importlib import import_module

from ._base import Provider

#: Built-in provider names → ``module:Class`` (imported only when patched).
BUILTIN: dict[str, str] = {
    "openai": "logos_shift.providers.openai:OpenAIProvider",
    "anthropic": "logos_shift.providers.anthropic:AnthropicProvider",
}


def load(name: str) -> Provider:
    """Instantiate the built-in provider ``name``.

    Args:
        name: ``"openai"`` or ``"anthropic"``.

    Returns:
        The provider object.

    Raises:
        KeyError: ``name`` is not a built-in provider.
    """
    module, _, cls = BUILTIN[name].partition(":")
    provider: Provider = getattr(import_module(module), cls)()
    return provider


__all__ = ["BUILTIN", "Provider", "load"]
