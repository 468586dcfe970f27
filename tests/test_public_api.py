"""The public surface is exactly logos_shift.__all__."""

from __future__ import annotations

import dataclasses
import typing

import pytest

import logos_shift
from logos_shift import providers, routing
from logos_shift._settings import Settings
from logos_shift.testing import capture_records

EXPECTED = [
    "ConfigError",
    "LogosShift",
    "LogosShiftError",
    "MemorySink",
    "SettingsKwargs",
    "Sink",
    "Stats",
    "__version__",
    "context",
    "get_client",
    "init",
    "last_call_id",
    "patch",
    "patch_all",
    "patch_anthropic",
    "patch_openai",
    "provide_feedback",
    "unpatch",
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


def test_settings_kwargs_name_every_keyword_setting() -> None:
    """The ``**settings`` TypedDict has every setting but the four positional ones, typed alike."""
    fields = {f.name: f.type for f in dataclasses.fields(Settings)}
    positional = ("api_key", "server_url", "filename", "routes")
    hints = typing.get_type_hints(logos_shift.SettingsKwargs)
    assert list(hints) == [n for n in fields if n not in positional]
    settings_hints = typing.get_type_hints(Settings)
    for name, tp in hints.items():
        assert tp == settings_hints[name], name


def test_stats_is_typed() -> None:
    """``stats()`` returns exactly the keys its TypedDict names (optional ones aside)."""
    with capture_records() as cap:
        out = cap.client.stats()
    hints = typing.get_type_hints(logos_shift.Stats, include_extras=True)
    optional = {k for k, v in hints.items() if typing.get_origin(v) is typing.NotRequired}
    assert optional == {"router", "spool"}
    assert set(out) <= set(hints)
    assert set(hints) - set(out) <= optional


def test_errors_and_routing_schema_are_public() -> None:
    """ConfigError is a LogosShiftError and a ValueError; routing exports its schema."""
    assert issubclass(logos_shift.ConfigError, logos_shift.LogosShiftError)
    assert issubclass(logos_shift.ConfigError, ValueError)
    for name in ("RouterConfig", "RouteConfig", "VariantConfig", "validate_config"):
        assert name in routing.__all__
    with pytest.raises(logos_shift.ConfigError):
        routing.validate_config({"version": -1})


def test_an_unknown_provider_is_named() -> None:
    """``patch()`` of a name no provider registered raises ValueError listing the known ones."""
    with pytest.raises(ValueError, match="known providers: anthropic, google_genai, openai"):
        logos_shift.patch("no-such-sdk")


def test_a_registered_provider_is_patched_by_name() -> None:
    """``providers.register`` adds a provider ``patch``/``patch_all``/``unpatch`` then cover."""
    fake = providers.Provider(
        name="fake", package="logos_shift_no_such_sdk", min_version=(0,), max_version=(9,),
        targets=(),
    )  # fmt: skip
    providers.register("fake", fake)
    try:
        assert "fake" in providers.providers()
        with pytest.raises(ImportError):
            logos_shift.patch("fake")  # found by name; its SDK is not installed
        assert providers.patch("fake", explicit=False) is False
        logos_shift.unpatch("fake")
    finally:
        providers.unregister("fake")
    assert "fake" not in providers.providers()


def test_a_plugin_that_cannot_be_imported_is_skipped_by_patch_all(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """``patch_all()`` skips (and names) a provider whose module fails to import."""
    providers.register("broken", "logos_shift_no_such_module:PROVIDER")
    try:
        with caplog.at_level("WARNING", logger="logos_shift"):
            assert "broken" not in logos_shift.patch_all()
        assert "'broken' cannot be loaded" in caplog.text
        with pytest.raises(ImportError):
            logos_shift.patch("broken")
    finally:
        providers.unregister("broken")
        logos_shift.unpatch_all()
