"""The dashboard in a real headless Chromium against a real `logos-shift server` process.

Needs Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them) and
``selenium`` (the dev extra); skipped, saying which is missing, otherwise.  With
``LOGOS_SHIFT_SCREENSHOTS=<dir>`` the test also saves each page (1280x800) there —
the README's screenshots come from this.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
import requests

import logos_shift
from logos_shift.testing import FakeProvider

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
# Read at import: the suite's autouse fixture strips LOGOS_SHIFT_* variables.
SHOTS = os.environ.get("LOGOS_SHIFT_SCREENSHOTS")
HOSTILE = "<script>alert('pwned')</script> what is 2+2?"


def _missing() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[dev]')"
    for path, package in ((CHROMIUM, "chromium"), (DRIVER, "chromium-driver")):
        if not os.path.exists(path):
            return f"{path} is missing: apt-get install -y chromium chromium-driver ({package})"
    return None


pytestmark = [
    pytest.mark.dashboard,
    pytest.mark.slow,
    pytest.mark.skipif(_missing() is not None, reason=str(_missing())),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _cli(*args: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "logos_shift", *args],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return out.stdout.strip()


class Site:
    """The running server, its keys and a helper for the admin JSON API."""

    def __init__(self, url: str, admin: str, ingest: str) -> None:
        self.url, self.admin, self.ingest = url, admin, ingest

    def api(self, method: str, path: str, body: Any = None) -> requests.Response:
        """Call the JSON API with the admin key."""
        return requests.request(
            method, self.url + path, json=body, timeout=10,
            headers={"Authorization": f"Bearer {self.admin}"},
        )  # fmt: skip


@pytest.fixture
def site(tmp_path: Path, fake_provider: FakeProvider) -> Iterator[Site]:
    """`logos-shift server` on a fresh SQLite file, the fake provider as backend ``fake``."""
    url = f"sqlite:///{tmp_path / 'logos.db'}"
    _cli("migrate", "--database-url", url)
    admin = _cli("keys", "create", "--project", "acme", "--scope", "admin", "--database-url", url)
    ingest = _cli("keys", "create", "--project", "acme", "--scope", "ingest", "--database-url", url)
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGOS_SHIFT_")}
    env["LOGOS_SHIFT_BACKEND_FAKE_URL"] = fake_provider.openai_base_url
    env["LOGOS_SHIFT_BACKEND_FAKE_KEY"] = "fake"
    log = (tmp_path / "server.log").open("w")
    argv = [sys.executable, "-m", "logos_shift", "server", "--port", str(port), "--database-url",
            url]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=log, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(base + "/healthz", timeout=2)
                break
            except requests.ConnectionError:
                assert proc.poll() is None, "server exited early"
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.1)
        yield Site(base, admin, ingest)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def _send_traffic(site: Site, fake: FakeProvider, tmp_path: Path, n: int = 40) -> str:
    """Make ``n`` patched openai calls (routed by the server's config) with success
    feedback, and one hostile one; return its response id."""
    ls = logos_shift.init(
        api_key=site.ingest,
        server_url=site.url,
        spool_dir=str(tmp_path / "spool"),
        state_dir=str(tmp_path / "state"),
        flush_interval=0.2,
    )
    ls.router.refresh_now()
    logos_shift.patch_openai()
    client = openai.OpenAI(base_url=fake.openai_base_url, api_key="fake")
    try:
        for i in range(n):
            with logos_shift.context(dataset="support", user_id=f"user-{i}"):
                reply = client.chat.completions.create(
                    model="gpt-4o", messages=[{"role": "user", "content": f"question {i}"}]
                )
                ls.provide_feedback(reply.id, "success")
        with logos_shift.context(dataset="support"):
            hostile = client.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": HOSTILE}]
            )
        assert ls.flush(10)
    finally:
        client.close()
        logos_shift.unpatch_openai()
        ls.shutdown(10)
    return str(hostile.id)


def _wait(predicate: Any, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


@pytest.fixture
def browser() -> Iterator[Any]:
    """A headless Chromium at 1280x800 through the system chromedriver."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                "--window-size=1280,800", "--disable-gpu"):  # fmt: skip
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def _shot(driver: Any, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(Path(SHOTS) / f"{name}.png"))


def _navigate(driver: Any, element: Any, submit: bool = False) -> None:
    """Click (or submit) ``element`` and wait until the next page replaced this one."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.expected_conditions import staleness_of
    from selenium.webdriver.support.wait import WebDriverWait

    page = driver.find_element(By.TAG_NAME, "html")
    element.submit() if submit else element.click()
    WebDriverWait(driver, 15).until(staleness_of(page))


def _text(driver: Any) -> str:
    from selenium.webdriver.common.by import By

    return str(driver.find_element(By.TAG_NAME, "body").text)


def test_dashboard_in_a_browser(
    site: Site, fake_provider: FakeProvider, browser: Any, tmp_path: Path
) -> None:
    """Sign in, find and open a call (hostile text shown as text), see the rollout, pause it,
    see the money page, sign out; a signed-out visitor and an ingest key get nothing."""
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By

    hostile_id = _send_traffic(site, fake_provider, tmp_path)
    fake_provider.finetune_schedule(seconds_per_phase=0)
    body = {"dataset": "support", "base_model": "gpt-4o-mini", "backend": "fake",
            "policy": {"stages": [0.1, 1.0]}}  # fmt: skip
    started = site.api("POST", "/v1/finetune", body)
    assert started.status_code == 202, started.text
    _wait(
        lambda: site.api("GET", "/v1/routes/support/rollout").json()["state"]["status"] == "canary",
        "the canary",
    )
    _send_traffic(site, fake_provider, tmp_path, n=60)  # now routed: control and the variant

    def sign_in(key: str) -> None:
        browser.get(site.url + "/ui/")
        field = browser.find_element(By.ID, "key")
        field.clear()
        field.send_keys(key)
        _navigate(browser, browser.find_element(By.CSS_SELECTOR, "form.login button"))

    # A signed-out visitor lands on the sign-in form; an ingest key is refused.
    browser.get(site.url + "/ui/calls")
    assert "Admin API key" in _text(browser)
    assert "question" not in _text(browser)
    _shot(browser, "login")
    sign_in(site.ingest)
    assert "the dashboard needs an admin key" in _text(browser)
    assert not [c for c in browser.get_cookies() if c["name"] == "logos_session"]

    sign_in(site.admin)
    page = _text(browser)
    assert "Overview" in page
    assert "support" in page
    (cookie,) = [c for c in browser.get_cookies() if c["name"] == "logos_session"]
    assert cookie["httpOnly"] is True
    assert site.admin not in cookie["value"]
    assert browser.execute_script("return document.cookie") == ""
    _shot(browser, "overview")

    _navigate(browser, browser.find_element(By.LINK_TEXT, "Calls"))
    assert "question 39" in _text(browser)
    _shot(browser, "calls")
    box = browser.find_element(By.ID, "f-q")
    box.send_keys(hostile_id)  # by the provider's response id
    _navigate(browser, box, submit=True)
    assert len(browser.find_elements(By.CSS_SELECTOR, "tbody a")) == 1
    assert "what is 2+2?" in _text(browser)
    box = browser.find_element(By.ID, "f-q")
    box.clear()
    box.send_keys("WHAT IS 2+2")  # by text, case-insensitive: both hostile calls
    _navigate(browser, box, submit=True)
    links = browser.find_elements(By.CSS_SELECTOR, "tbody a")
    assert len(links) == 2
    _navigate(browser, links[-1])  # the older one, made before the canary
    page = _text(browser)
    assert HOSTILE in page  # shown literally, as text
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text  # noqa: B018 - no script ran
    assert "gpt-4o" in page
    _shot(browser, "call")

    _navigate(browser, browser.find_element(By.LINK_TEXT, "Overview"))
    assert "Canary: 10.0% of users get" in _text(browser)
    _navigate(browser, browser.find_element(By.CSS_SELECTOR, "a[href='/ui/routes/support']"))
    assert "Canary: 10.0% of users get" in _text(browser)
    assert "No calls on this route yet" not in _text(browser)  # both arms have evidence
    arms = browser.find_elements(
        By.XPATH, "//h2[.='Evidence per arm']/following::table[1]/tbody/tr"
    )
    assert len(arms) == 2
    _shot(browser, "rollout")
    pause = browser.find_element(By.XPATH, "//button[starts-with(normalize-space(), 'Pause')]")
    assert "10.0% stay on the variant" in pause.text  # the button says what will happen
    _navigate(browser, pause)
    assert "Paused by hand at 10.0%" in _text(browser)
    assert site.api("GET", "/v1/routes/support/rollout").json()["state"]["status"] == "paused"

    _navigate(browser, browser.find_element(By.LINK_TEXT, "Money"))
    page = _text(browser)
    assert "What the variants saved versus control" in page
    assert "gpt-4o" in page
    _shot(browser, "money")

    _navigate(browser, browser.find_element(By.XPATH, "//button[normalize-space()='Sign out']"))
    browser.get(site.url + "/ui/routes/support")
    assert "Admin API key" in _text(browser)
    assert "Paused" not in _text(browser)
