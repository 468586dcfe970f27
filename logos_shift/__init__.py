"""Logos Shift: capture LLM and API calls in-process, collect feedback,
fine-tune a cheaper model and roll it out safely.

Quick start::

    import logos_shift
    ls = logos_shift.init(filename="calls.jsonl")   # or server_url=..., api_key=...
    logos_shift.patch_openai()                      # captures every openai call

    @ls(dataset="sales")
    def add_sales(x, y):
        return {"sum": x + y}

    r = add_sales(1, 2, logos_shift_metadata={"user_id": "12345"})
    ls.provide_feedback(r["logos_shift_id"], "success")
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError as _PackageNotFoundError
from importlib.metadata import version as _version

from ._capture.scope import last_call_id
from ._client import LogosShift, Stats, context, get_client, init, provide_feedback
from ._settings import SettingsKwargs
from ._transport.sinks import MemorySink, Sink
from .errors import ConfigError, LogosShiftError
from .providers import (
    patch,
    patch_all,
    patch_anthropic,
    patch_openai,
    unpatch,
    unpatch_all,
    unpatch_anthropic,
    unpatch_openai,
)

try:
    __version__ = _version("logos-shift")
except _PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = [
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
