"""The fake provider's lifecycle and plumbing: stop, clear/reset, models, the pytest plugin."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import openai
import pytest

from logos_shift.testing import FakeProvider
from tests.testing.clients import (
    USER,
    oai,
    training_jsonl,
)


def test_stop_closes_keep_alive_connections_and_restart_is_refused() -> None:
    """Stopping with a client's keep-alive connection still open closes it cleanly."""
    fp = FakeProvider().start()
    with pytest.raises(RuntimeError):
        fp.start()
    client = oai(fp)
    try:
        client.chat.completions.create(model="m", messages=USER)
        fp.stop()
        with pytest.raises(openai.APIConnectionError):
            client.chat.completions.create(model="m", messages=USER)
    finally:
        client.close()
        fp.stop()
    with pytest.raises(RuntimeError):
        _ = fp.url


def test_clear_and_reset(fake_provider: FakeProvider) -> None:
    """``clear`` forgets requests only; ``reset`` also drops scripts and model failures."""
    fake_provider.script(text="pending")
    fake_provider.fail_model("x")
    with oai(fake_provider) as client:
        client.embeddings.create(model="e", input="a")
        fake_provider.clear()
        assert fake_provider.requests == []
        fake_provider.reset()
        reply = client.chat.completions.create(model="x", messages=USER)
    assert reply.choices[0].message.content == "Echo: what is the weather"
    assert fake_provider.errors == []


def test_models_list_and_retrieve(fake_provider: FakeProvider) -> None:
    """``models.list`` includes fine-tuned models and any model id can be retrieved."""
    fake_provider.finetune_schedule(seconds_per_phase=0)
    with oai(fake_provider) as client:
        upload = client.files.create(file=("t.jsonl", training_jsonl()), purpose="fine-tune")
        job = client.fine_tuning.jobs.create(model="b", training_file=upload.id)
        name = client.fine_tuning.jobs.retrieve(job.id).fine_tuned_model
        listed = [m.id for m in client.models.list()]
        retrieved = client.models.retrieve(str(name))
    assert name in listed
    assert "gpt-4o-mini" in listed
    assert retrieved.id == name


def test_unknown_path_is_404(fake_provider: FakeProvider) -> None:
    """An unknown endpoint answers 404 in OpenAI's error shape."""
    with oai(fake_provider) as client, pytest.raises(openai.NotFoundError) as info:
        client.batches.list()
    assert "Unknown path GET /v1/batches" in info.value.message


def test_pytest_plugin_provides_fixture(tmp_path: Any) -> None:
    """``pytest_plugins = ["logos_shift.testing"]`` gives users a started ``fake_provider``."""
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["logos_shift.testing"]\n')
    (tmp_path / "test_user.py").write_text(
        "import openai\n"
        "def test_app(fake_provider):\n"
        "    fake_provider.script(text='Paris')\n"
        "    with openai.OpenAI(base_url=fake_provider.openai_base_url, api_key='k') as c:\n"
        "        msgs = [{'role': 'user', 'content': 'q'}]\n"
        "        r = c.chat.completions.create(model='m', messages=msgs)\n"
        "    assert r.choices[0].message.content == 'Paris'\n"
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-W",
            "error",
            str(tmp_path),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


def test_import_does_not_import_pytest() -> None:
    """Importing logos_shift.testing outside pytest neither needs nor loads pytest."""
    code = (
        "import sys, logos_shift.testing as t; "
        "assert 'pytest' not in sys.modules; assert callable(t.fake_provider); "
        "assert sorted(t.__all__) == t.__all__"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
