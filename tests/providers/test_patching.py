"""Installing and removing the wrappers: idempotent, reversible, version-gated."""

from __future__ import annotations

import sys
import warnings

import anthropic
import openai
import pytest
import wrapt

import logos_shift._patch_api as api
from logos_shift import _patching
from logos_shift.testing import FakeProvider, capture_records

MSG = [{"role": "user", "content": "hi"}]


def _chat_class() -> type:
    return openai.resources.chat.completions.Completions


def test_patch_twice_is_one_wrapper() -> None:
    """A second patch_openai() adds no second wrapper."""
    api.patch_openai()
    api.patch_openai()
    assert _patching.wrapper_count(_chat_class(), "create") == 1


def test_patch_unpatch_patch_leaves_one_wrapper() -> None:
    """patch -> unpatch -> patch leaves exactly one wrapper, and unpatch restores the original."""
    original = _chat_class().__dict__["create"]
    api.patch_openai()
    api.unpatch_openai()
    assert _chat_class().__dict__["create"] is original
    api.patch_openai()
    assert _patching.wrapper_count(_chat_class(), "create") == 1
    api.unpatch_all()
    assert _chat_class().__dict__["create"] is original


def test_unpatch_keeps_another_librarys_wrapper_on_top() -> None:
    """Removing ours splices it out from under a wrapper stacked later by someone else."""
    api.patch_openai()

    def other(wrapped, instance, args, kwargs):
        return wrapped(*args, **kwargs)

    handle = wrapt.wrap_function_wrapper(_chat_class(), "create", other)
    api.unpatch_openai()
    assert _patching.wrapper_count(_chat_class(), "create") == 0
    assert isinstance(_chat_class().__dict__["create"], wrapt.FunctionWrapper)
    wrapt.unwrap_object(_chat_class(), "create", handle)


def test_patch_all_patches_installed_sdks() -> None:
    """patch_all() patches every installed supported SDK and reports them."""
    assert api.patch_all() == ["anthropic", "openai"]
    assert _patching.wrapper_count(anthropic.resources.messages.Messages, "create") == 1


def test_missing_sdk_named_raises_and_patch_all_skips(monkeypatch: pytest.MonkeyPatch) -> None:
    """A named missing SDK raises a clear ImportError; patch_all() skips it quietly."""
    monkeypatch.setitem(sys.modules, "anthropic", None)
    with pytest.raises(ImportError, match="pip install anthropic"):
        api.patch_anthropic()
    assert api.patch_all() == ["openai"]


def test_unsupported_version_warns_once_and_patches_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An SDK outside the supported range gets one warning and no wrapper."""
    monkeypatch.setattr(_patching, "_sdk_version", lambda p: "9.0.0")
    monkeypatch.setattr(_patching, "_warned", set())
    with pytest.warns(RuntimeWarning, match="not captured"):
        api.patch_openai()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        api.patch_openai()
    assert _patching.wrapper_count(_chat_class(), "create") == 0
    assert _patching.patched() == []


def test_client_created_before_patching_is_captured(fp: FakeProvider) -> None:
    """A client built before patch_openai() is captured (class-level patch)."""
    client = openai.OpenAI(base_url=fp.openai_base_url, api_key="test")
    _ = client.chat.completions  # resources resolved before patching too
    api.patch_openai()
    with capture_records() as cap:
        client.chat.completions.create(model="gpt-4o-mini", messages=MSG)
        client.close()
        assert len(cap.calls) == 1


def test_raw_response_resolved_after_patching_is_captured(fp: FakeProvider) -> None:
    """with_raw_response touched after patching goes through the wrapper."""
    client = openai.OpenAI(base_url=fp.openai_base_url, api_key="test")
    api.patch_openai()
    with capture_records() as cap:
        raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MSG)
        reply = raw.parse()
        client.close()
        (rec,) = cap.calls
    assert rec["response_id"] == reply.id
    assert reply.logos_shift_id == rec["id"]
