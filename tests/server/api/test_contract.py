"""The API contract over every operation of the OpenAPI document (fine-tune and rollout
included): who may call what (the auth matrix) and that every status answered is documented."""

from __future__ import annotations

from typing import Any

import requests

from logos_shift.server import RunningServer

PARAMS = {
    "route": "support", "name": "support", "model": "gpt-4o", "action": "pause", "call_id": "c-1",
}  # fmt: skip
MALFORMED = [
    "Bearer", "Bearer ", "bearer", "Basic YWxhZGRpbjpvcGVuc2VzYW1l", "lsk_abc", "Token lsk_abc",
    "Bearer lsk_" + "x" * 43, "Bearer " + "lsk_" + "y" * 500, "Bearer lsk_ two words",
    "Bearer not-a-key", "Bearer\tlsk_tab",
]  # fmt: skip
INGEST_SCOPE = {("POST", "/v1/ingest"), ("POST", "/v1/feedback"), ("GET", "/v1/config")}


def _operations(spec: dict[str, Any]) -> list[tuple[str, str]]:
    return sorted(
        (method.upper(), path)
        for path, item in spec["paths"].items()
        for method in item
        if method in ("get", "post", "put", "delete")
    )


def _call(base: str, method: str, path: str, auth: str | None) -> requests.Response:
    url = base + path.format(**PARAMS).replace("{model}", "gpt-4o")
    headers = {} if auth is None else {"Authorization": auth}
    body: Any = {}
    if path == "/v1/ingest":
        body = []
    elif path.startswith("/v1/prices/"):
        body = {"input_per_mtok": 1, "output_per_mtok": 1}
    return requests.request(method, url, json=body, headers=headers, timeout=30)


def test_every_operation_answers_every_kind_of_caller_as_it_should(
    full_server: tuple[RunningServer, dict[str, str]],
) -> None:
    """No key, 11 malformed headers and a revoked key get 401; an ingest key gets 403 outside
    ingest, feedback and config; admin keys pass; every answer is documented."""
    running, keys = full_server
    spec = requests.get(running.url + "/openapi.json", timeout=10).json()
    operations = _operations(spec)
    assert len(operations) >= 19
    assert any("finetune" in p for _, p in operations)
    assert any("rollout" in p for _, p in operations)
    for method, path in operations:
        documented = {int(s) for s in spec["paths"][path][method.lower()]["responses"]}
        if path == "/healthz":
            assert _call(running.url, method, path, None).status_code == 200
            continue
        callers = [None, *MALFORMED, f"Bearer {keys['revoked']}"]
        for auth in callers:
            r = _call(running.url, method, path, auth)
            assert r.status_code == 401, (method, path, auth, r.status_code, r.text)
            assert r.json()["error"] == "unauthorized"
        answers = {}
        for who in ("ingest", "admin", "other"):
            r = _call(running.url, method, path, f"Bearer {keys[who]}")
            answers[who] = r.status_code
            assert r.status_code < 500, (method, path, who, r.text)
            assert r.status_code in documented, (method, path, who, r.status_code, documented)
        if (method, path) in INGEST_SCOPE:
            assert answers["ingest"] not in (401, 403), (method, path)
        else:
            assert answers["ingest"] == 403, (method, path)
        assert answers["admin"] not in (401, 403), (method, path)
        assert answers["other"] not in (401, 403), (method, path)


def test_every_operation_documents_its_error_statuses(
    full_server: tuple[RunningServer, dict[str, str]],
) -> None:
    """Each operation lists the errors every endpoint can answer, and the rollout ones list
    404, 409 and 502 where they answer them."""
    running, _ = full_server
    spec = requests.get(running.url + "/openapi.json", timeout=10).json()
    for method, path in _operations(spec):
        op = spec["paths"][path][method.lower()]
        documented = {int(s) for s in op["responses"]}
        if path == "/healthz":
            assert {200, 503} <= documented
            continue
        assert {400, 401, 403, 413, 422, 429, 503} <= documented, (method, path, documented)
        for status in (401, 429):
            assert op["responses"][str(status)]["content"]["application/json"]["schema"]
    fine = spec["paths"]["/v1/finetune"]["post"]["responses"]
    assert {202, 409, 429, 502} <= {int(s) for s in fine}
    action = spec["paths"]["/v1/routes/{route}/rollout/{action}"]["post"]["responses"]
    assert {200, 404, 409} <= {int(s) for s in action}
    assert "Retry-After" in fine["429"].get("headers", {})
