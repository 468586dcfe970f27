"""The public surface is exactly logos_shift.__all__."""

from __future__ import annotations

import logos_shift

EXPECTED = [
    "ConfigError",
    "LogosShift",
    "LogosShiftError",
    "MemorySink",
    "Sink",
    "__version__",
    "context",
    "get_client",
    "init",
    "last_call_id",
    "patch_all",
    "patch_anthropic",
    "patch_openai",
    "provide_feedback",
    "unpatch_all",
    "unpatch_anthropic",
    "unpatch_openai",
]


def test_all_is_pinned_sorted_and_documented() -> None:
    """__all__ is this exact sorted list and every callable in it is documented."""
    assert logos_shift.__all__ == EXPECTED
    for name in logos_shift.__all__:
        obj = getattr(logos_shift, name)
        if callable(obj):
            assert obj.__doc__, f"{name} has no docstring"


def test_no_stray_public_names() -> None:
    """Nothing public is exported by accident (only __all__ and submodules)."""
    public = {n for n in vars(logos_shift) if not n.startswith("_")}
    submodules = {
        "annotations", "cli", "errors", "export", "providers", "routing", "server", "testing",
        "webhooks",
    }  # fmt: skip
    assert public - submodules == set(EXPECTED) - {"__version__"}
