"""Public ``patch_*`` / ``unpatch_*`` functions (re-exported by ``logos_shift``)."""

from __future__ import annotations

from . import _patching
from .providers import BUILTIN


def patch_openai() -> None:
    """Capture every call of the openai SDK (1.66 - 3.x), including existing clients.

    Patching twice is a no-op.  Call it before creating clients where possible:
    a client whose ``with_raw_response`` was used before patching keeps calling
    the unwrapped method through that cached object.

    Raises:
        ImportError: the openai package is not installed.

    Example:
        >>> import logos_shift
        >>> logos_shift.patch_openai()  # doctest: +SKIP
    """
    _patching.patch("openai")


def patch_anthropic() -> None:
    """Capture every call of the anthropic SDK (0.49 - 2.x), beta messages included.

    Raises:
        ImportError: the anthropic package is not installed.
    """
    _patching.patch("anthropic")


def patch_all() -> list[str]:
    """Patch every installed, supported SDK; missing ones are skipped quietly.

    Returns:
        The names of the providers patched after the call.
    """
    for name in BUILTIN:
        _patching.patch(name, explicit=False)
    return _patching.patched()


def unpatch_openai() -> None:
    """Remove logos_shift's openai wrappers (other libraries' wrappers stay)."""
    _patching.unpatch("openai")


def unpatch_anthropic() -> None:
    """Remove logos_shift's anthropic wrappers (other libraries' wrappers stay)."""
    _patching.unpatch("anthropic")


def unpatch_all() -> None:
    """Remove every wrapper logos_shift installed."""
    for name in BUILTIN:
        _patching.unpatch(name)
