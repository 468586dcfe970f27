"""The first hour, as a new user lives it: the README's quick start and self-hosting section,
run literally in a fresh virtualenv made from the built wheel.

    python tests/first_hour.py        (make first-hour; .ci/run runs it)

Each command and code block is taken from README.md as written and run in a new empty
directory, with only these substitutions, which a user makes too: the checkout's ``.`` in
``pip install '.[…]'`` becomes the wheel built from it; the ``lsk_...`` placeholders become
the keys ``keys create`` printed; ``ID`` becomes a call id ``calls`` listed.  The openai
SDK talks to ``logos_shift.testing.FakeProvider`` through ``OPENAI_BASE_URL`` (the machine
is offline).  Every step is checked; the script exits non-zero naming the first one that
did not do what the README says.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


class StepFailed(Exception):
    """A step of the first hour did not do what the README says."""


def section(title: str) -> str:
    """The README's section under ``## title`` (up to the next ``## ``)."""
    return README.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def blocks(text: str, lang: str) -> list[str]:
    """The fenced code blocks of ``lang`` in ``text``, in order."""
    return re.findall(rf"```{lang}\n(.*?)```", text, flags=re.S)


def commands(block: str) -> list[str]:
    """The shell commands of a bash block: one per line, comments removed."""
    out = []
    for line in block.splitlines():
        line = re.sub(r"\s+#.*$", "", line).strip()
        if line and not line.startswith("#"):
            out.append(line)
    return out


def step(title: str) -> None:
    print(f"\n== {title}", flush=True)


def check(cond: bool, what: str, detail: str = "") -> None:
    if not cond:
        raise StepFailed(what + (f"\n{detail}" if detail else ""))


class User:
    """A shell in the user's directory with the virtualenv's bin first on PATH."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("LOGOS_SHIFT_", "OPENAI_", "ANTHROPIC_", "VIRTUAL_ENV"))
        }
        self.env["XDG_CACHE_HOME"] = str(home / ".cache")
        self.env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"

    def use_venv(self, venv: Path) -> None:
        self.env["VIRTUAL_ENV"] = str(venv)
        self.env["PATH"] = f"{venv / 'bin'}{os.pathsep}{self.env.get('PATH', '')}"

    def sh(
        self, command: str, timeout: float = 120, ok: bool = True
    ) -> subprocess.CompletedProcess[str]:
        print(f"$ {command}", flush=True)
        result = subprocess.run(
            ["bash", "-c", command],
            cwd=self.home,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        for stream in (result.stdout, result.stderr):
            shown = stream.strip().splitlines()
            for line in shown[:15]:
                print(f"  {line}", flush=True)
            if len(shown) > 15:
                print(f"  … {len(shown) - 15} more lines", flush=True)
        if ok:
            check(
                result.returncode == 0,
                f"`{command}` exited {result.returncode}",
                result.stdout[-2000:] + result.stderr[-2000:],
            )
        return result

    def python(self, code: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        path = self.home / f"snippet_{abs(hash(code)) % 10**8}.py"
        path.write_text(code)
        return self.sh(f"python {path.name}", timeout=timeout)

    def background(self, command: str, log_name: str) -> subprocess.Popen[str]:
        print(f"$ {command} &", flush=True)
        log = (self.home.parent / log_name).open("w")
        return subprocess.Popen(
            ["bash", "-c", f"exec {command}"],
            cwd=self.home,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )


def build_wheel(out: Path) -> Path:
    step("build the wheel from this checkout")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT)],
        check=True,
        timeout=600,
    )
    (wheel,) = out.glob("logos_shift-*.whl")
    print(f"  {wheel.name}")
    return wheel


def wait_http(url: str, proc: subprocess.Popen[str], what: str) -> None:
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except (urllib.error.URLError, OSError):
            check(proc.poll() is None, f"{what} exited early (status {proc.returncode})")
            check(time.monotonic() < deadline, f"{what} did not answer {url} within 60 s")
            time.sleep(0.2)


def stop(proc: subprocess.Popen[str] | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def first_hour(work: Path) -> None:
    wheel = build_wheel(work / "dist")
    home = work / "app"
    home.mkdir()
    user = User(home)

    quick = section("Quick start")
    install, *_ = blocks(quick, "bash")
    step("install, as the quick start says (the checkout's '.' is the wheel)")
    for command in commands(install):
        command = command.replace("'.[", f"'{wheel}[")
        if command.startswith("python3 -m venv .venv && . .venv/bin/activate"):
            user.sh(f"{sys.executable} -m venv .venv", timeout=120)
            user.use_venv(home / ".venv")
            continue
        user.sh(command, timeout=900)
    user.sh("logos-shift --version")

    step("the quick start's Python")
    (code,) = blocks(quick, "python")
    user.python(code)
    lines = (home / "calls.jsonl").read_text().splitlines()
    kinds = [json.loads(line)["type"] for line in lines]
    check(kinds == ["call", "feedback"], "calls.jsonl holds the call and its feedback", str(kinds))

    host = section("Self-hosting the Logos server")
    shell, views = blocks(host, "bash")[:2]
    client_code = blocks(host, "python")[0]
    step("keys and the server, as the self-hosting section says")
    keys: list[str] = []
    server: subprocess.Popen[str] | None = None
    fake: subprocess.Popen[str] | None = None
    try:
        for command in commands(shell):
            if command == "logos-shift server":
                server = user.background(command, "server.log")
                wait_http("http://127.0.0.1:8600/healthz", server, "logos-shift server")
                continue
            result = user.sh(command)
            keys.append(result.stdout.strip())
        ingest, admin = keys
        check(ingest.startswith("lsk_") and admin.startswith("lsk_"), "keys start with lsk_")
        check((home / "logos.db").exists(), "the server's database is ./logos.db")

        step("the patched openai client (against the fake provider), calls and feedback")
        fake = user.background(
            "python -c 'import time; from logos_shift.testing import FakeProvider; "
            "fp = FakeProvider().start(); print(fp.openai_base_url, flush=True); "
            "time.sleep(3600)'",
            "fake.log",
        )
        deadline = time.monotonic() + 60
        while not (work / "fake.log").read_text().strip():
            check(fake.poll() is None, "the fake provider exited early")
            check(time.monotonic() < deadline, "the fake provider did not start")
            time.sleep(0.2)
        user.env["OPENAI_BASE_URL"] = (work / "fake.log").read_text().split()[0]
        user.env["OPENAI_API_KEY"] = "test"
        user.python(client_code.replace('api_key="lsk_..."', f'api_key="{ingest}"'))

        step("the CLI views, as the self-hosting section says")
        listed: dict[str, Any] = {}
        for command in commands(views):
            if command.startswith("export LOGOS_SHIFT_ADMIN_KEY="):
                user.env["LOGOS_SHIFT_ADMIN_KEY"] = admin
                continue
            if command == "logos-shift call ID":
                call_id = listed["calls"][0]["record"]["id"]
                result = user.sh(f"logos-shift call {call_id}")
                check(f"id:          {call_id}" in result.stdout, "`call ID` shows the call")
                check("success" in result.stdout, "`call ID` shows its feedback")
                continue
            result = user.sh(command)
            if command == "logos-shift datasets":
                rows = [line.split() for line in result.stdout.splitlines()[1:]]
                check(rows[0][:3] == ["support", "1", "1"], "datasets: support, 1 call, 1 rated")
            if command == "logos-shift calls support":
                check(len(result.stdout.splitlines()) == 2, "calls: a header and one call")
                check("Where is my order?" in result.stdout, "calls shows the question")
                listed = json.loads(user.sh(f"{command} --json").stdout)
            if command == "logos-shift feedback pending":
                check("no feedback is waiting" in result.stderr, "nothing pending")

        step("export without a server, as the README says")
        (export_block,) = [b for b in blocks(host, "bash") if "logos-shift export" in b]
        for command in commands(export_block):
            result = user.sh(command)
            check("exported 1 of 2 calls" in result.stderr, "the chat call is exported")
        example = json.loads((home / "train.jsonl").read_text())
        roles = [m["role"] for m in example["messages"]]
        check(roles == ["user", "assistant"], "train.jsonl is an OpenAI chat example", str(roles))
    finally:
        stop(server)
        stop(fake)
    check(server is not None and server.returncode == 0, "the server stops cleanly on SIGTERM")


def main() -> int:
    start = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="logos-first-hour-"))
    try:
        first_hour(work)
    except StepFailed as exc:
        print(f"\nFIRST HOUR FAILED: {exc}", file=sys.stderr)
        print(f"(the directory is kept: {work})", file=sys.stderr)
        return 1
    print(f"\nfirst hour: every step as the README says ({time.monotonic() - start:.0f} s)")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
