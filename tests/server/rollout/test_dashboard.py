"""The dashboard's pages over a real socket: sign-in, session cookie, CSRF, isolation, escaping."""

from __future__ import annotations

import re

import requests

from logos_shift.server import Database
from logos_shift.server.store.keys import create_key, revoke_key
from logos_shift.testing import FakeProvider
from tests.server.rollout.support import Server, call, feedback, seed_dataset, start_finetune

PAGES = ["/ui/", "/ui/calls", "/ui/money", "/ui/routes/support", "/ui/calls/anything"]


def _sign_in(server: Server, key: str | None = None) -> requests.Session:
    browser = requests.Session()
    r = browser.post(server.url + "/ui/login", data={"key": key or server.admin})
    assert r.status_code == 200, r.text
    assert "Sign out" in r.text
    return browser


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert found is not None
    return found.group(1)


def _db(server: Server) -> Database:
    return server.service.db


def test_signed_out_visitor_sees_only_the_sign_in_form(server: Server) -> None:
    """Every page sends a visitor without a session to the sign-in form, showing no data."""
    seed_dataset(server, 3)
    for page in PAGES:
        r = requests.get(server.url + page, timeout=10)
        assert r.url.endswith("/ui/login"), page
        assert "Admin API key" in r.text
        assert "question" not in r.text


def test_ingest_key_and_wrong_key_cannot_sign_in(server: Server) -> None:
    """An ingest key is refused (403, no session); a wrong key is 401; a sign-in posted
    from another site's page is refused."""
    browser = requests.Session()
    r = browser.post(
        server.url + "/ui/login", data={"key": server.admin}, headers={"Origin": "http://evil"}
    )
    assert r.status_code == 403
    assert not browser.cookies
    r = browser.post(server.url + "/ui/login", data={"key": server.ingest_key})
    assert r.status_code == 403
    assert "needs an admin key" in r.text
    assert not browser.cookies
    r = browser.post(server.url + "/ui/login", data={"key": "lsk_wrong"})
    assert r.status_code == 401
    assert not browser.cookies
    assert browser.get(server.url + "/ui/").url.endswith("/ui/login")


def test_session_cookie_flags_and_no_key_anywhere(server: Server) -> None:
    """The cookie is HttpOnly, SameSite=Strict, scoped to /ui, holds no key; pages hold no key."""
    r = requests.post(
        server.url + "/ui/login", data={"key": server.admin}, allow_redirects=False, timeout=10
    )
    assert r.status_code == 303
    header = r.headers["set-cookie"]
    assert "HttpOnly" in header
    assert "SameSite=strict" in header or "SameSite=Strict" in header
    assert "Path=/ui" in header
    assert "Secure" not in header  # plain HTTP here; set when the request is HTTPS
    assert server.admin not in header
    behind_tls = requests.post(
        server.url + "/ui/login",
        data={"key": server.admin},
        headers={"X-Forwarded-Proto": "https"},  # a TLS-terminating proxy on loopback
        allow_redirects=False,
        timeout=10,
    )
    assert "Secure" in behind_tls.headers["set-cookie"]
    browser = _sign_in(server)
    for page in PAGES:
        assert server.admin not in browser.get(server.url + page).text
    assert r.headers["cache-control"] == "no-store"


def test_logout_and_revoked_key_end_the_session(server: Server) -> None:
    """Signing out needs the CSRF token and ends the session; revoking the key ends it too."""
    browser = _sign_in(server)
    home = browser.get(server.url + "/ui/")
    assert browser.post(server.url + "/ui/logout", data={}).status_code == 403
    r = browser.post(server.url + "/ui/logout", data={"csrf": _csrf(home.text)})
    assert r.url.endswith("/ui/login")
    assert browser.get(server.url + "/ui/").url.endswith("/ui/login")
    key, info = create_key(_db(server), "acme", "admin")
    other = _sign_in(server, key)
    assert other.get(server.url + "/ui/").url.endswith("/ui/")
    revoke_key(_db(server), info.id)
    assert other.get(server.url + "/ui/").url.endswith("/ui/login")


def test_hostile_record_is_shown_as_text(server: Server) -> None:
    """A `<script>` in a stored input or output is shown escaped, never run as markup."""
    c = call("<script>alert('x')</script>", "<img src=x onerror=alert(1)>")
    server.ingest([c])
    browser = _sign_in(server)
    page = browser.get(server.url + f"/ui/calls/{c['id']}")
    assert page.status_code == 200
    assert "<script>alert" not in page.text
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in page.text
    assert "<img src=x" not in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]


def test_another_projects_call_is_not_found(server: Server) -> None:
    """A call id of another project answers 404, as the JSON API does."""
    other_ingest, _ = create_key(_db(server), "globex", "ingest")
    c = call("their secret question", "their answer")
    r = server.post("/v1/ingest", [c], key=other_ingest)
    assert r.status_code == 200
    assert r.json()["errors"] == 0
    browser = _sign_in(server)
    page = browser.get(server.url + f"/ui/calls/{c['id']}")
    assert page.status_code == 404
    assert "their secret question" not in page.text
    listing = browser.get(server.url + "/ui/calls")
    assert "their secret question" not in listing.text
    assert c["id"] not in listing.text


def test_calls_list_filters_and_pages(server: Server) -> None:
    """The list filters by outcome and id, and pages with the keyset cursor."""
    calls = [call(f"question {i}", f"answer {i}") for i in range(60)]
    commented = {**feedback(calls[0]["id"], "failure"), "comment": "wrong <b>answer</b>"}
    server.ingest([*calls, feedback(calls[0]["id"], "failure"), commented])
    browser = _sign_in(server)
    first = browser.get(server.url + "/ui/calls", params={"dataset": "support"})
    ids = re.findall(r'href="/ui/calls/([^"?]+)"', first.text)
    assert len(ids) == 50
    nxt = re.search(r'href="(/ui/calls\?[^"]+)" rel="next"', first.text)
    assert nxt is not None
    second = browser.get(server.url + nxt.group(1).replace("&amp;", "&"))
    more = re.findall(r'href="/ui/calls/([^"?]+)"', second.text)
    assert len(more) == 10
    assert not set(more) & set(ids)
    everything = browser.get(server.url + "/ui/calls", params={"dataset": ""})  # "all"
    nxt = re.search(r'href="(/ui/calls\?[^"]+)" rel="next"', everything.text)
    assert nxt is not None
    assert "dataset=&amp;" in nxt.group(1)  # the next page stays on "all"
    failed = browser.get(server.url + "/ui/calls", params={"outcome": "failure"})
    assert re.findall(r'href="/ui/calls/([^"?]+)"', failed.text) == [calls[0]["id"]]
    found = browser.get(server.url + "/ui/calls", params={"q": calls[5]["id"]})
    assert re.findall(r'href="/ui/calls/([^"?]+)"', found.text) == [calls[5]["id"]]
    text = browser.get(server.url + "/ui/calls", params={"q": "ANSWER 42"})
    assert re.findall(r'href="/ui/calls/([^"?]+)"', text.text) == [calls[42]["id"]]
    assert "newest 5000 calls" in text.text
    none = browser.get(server.url + "/ui/calls", params={"q": "50%_off", "outcome": "failure"})
    assert re.findall(r'href="/ui/calls/([^"?]+)"', none.text) == []
    detail = browser.get(server.url + f"/ui/calls/{calls[0]['id']}")  # feedback without a score
    assert detail.status_code == 200
    assert "wrong &lt;b&gt;answer&lt;/b&gt;" in detail.text
    bad = browser.get(server.url + "/ui/calls", params={"cursor": "nonsense"})
    assert "invalid cursor" in bad.text


def test_rollout_actions_need_the_csrf_token(server: Server, fake_provider: FakeProvider) -> None:
    """Pause without (or with a wrong) CSRF token is refused and changes nothing; with it,
    the rollout pauses; an action that does not apply says why."""
    seed_dataset(server)
    start_finetune(server, fake_provider, {"stages": [0.1, 1.0]})
    browser = _sign_in(server)
    page = browser.get(server.url + "/ui/routes/support")
    assert "Canary: 10.0% of users get" in page.text
    action = server.url + "/ui/routes/support/action"
    for form in ({"action": "pause"}, {"action": "pause", "csrf": "0" * 64}):
        assert browser.post(action, data=form).status_code == 403
    foreign = requests.post(action, data={"action": "pause", "csrf": _csrf(page.text)}, timeout=10)
    assert foreign.url.endswith("/ui/login") or foreign.status_code == 403
    assert server.get("/v1/routes/support/rollout").json()["state"]["status"] == "canary"
    r = browser.post(action, data={"action": "pause", "csrf": _csrf(page.text)})
    assert r.status_code == 200
    assert "Paused by hand" in r.text
    assert server.get("/v1/routes/support/rollout").json()["state"]["status"] == "paused"
    again = browser.post(action, data={"action": "pause", "csrf": _csrf(page.text)})
    assert again.status_code == 409
    assert "cannot pause" in again.text


def test_money_page_shows_what_the_variant_saved(
    server: Server, fake_provider: FakeProvider
) -> None:
    """Variant calls are priced at their model and at control's; the page shows the saving."""
    seed_dataset(server)
    start_finetune(server, fake_provider, {"stages": [0.1, 1.0]})
    route = server.get("/v1/config", key=server.ingest_key).json()["routes"]["support"]
    name = route["variants"][0]["name"]
    model = route["variants"][0]["model"]
    served = [
        call("q", "a", route="support", variant=name, served_model=model,
             usage={"input_tokens": 1_000_000, "output_tokens": 0})
        for _ in range(2)
    ]  # fmt: skip
    server.ingest(served)
    browser = _sign_in(server)
    page = browser.get(server.url + "/ui/money").text
    assert "support" in page
    assert model in page
    # gpt-4o input is $2.50 per million tokens; the fine-tuned gpt-4o-mini is $0.30.
    assert "$4.40" in page
