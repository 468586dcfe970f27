"""Helpers of the security tests: local listeners that record what the server sends them.

Every outbound test points the server at listeners these helpers start on
``127.0.0.x`` (nothing leaves the machine).  A :class:`Listener` records each
request (method, path, headers, body) and answers what its ``reply`` function
returns.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from requests.structures import CaseInsensitiveDict


@dataclass
class Seen:
    """One request a listener received."""

    method: str
    path: str
    headers: CaseInsensitiveDict[str]
    body: bytes

    def text(self) -> str:
        """Everything received as one string (for "did the secret arrive" checks)."""
        head = " ".join(f"{k}: {v}" for k, v in self.headers.items())
        return f"{self.method} {self.path} {head} {self.body.decode('utf-8', 'replace')}"


#: ``reply(seen) -> (status, headers, body)``.
Reply = Callable[[Seen], tuple[int, dict[str, str], bytes]]


def answer(status: int = 200, body: Any = None, **headers: str) -> Reply:
    """A reply that always answers ``status`` with ``body`` (JSON unless bytes)."""
    raw = body if isinstance(body, bytes) else json.dumps(body if body is not None else {}).encode()

    def reply(_seen: Seen) -> tuple[int, dict[str, str], bytes]:
        return status, {"Content-Type": "application/json", **headers}, raw

    return reply


@dataclass
class Listener:
    """An HTTP server on ``host`` (a free port unless given) recording every request."""

    host: str = "127.0.0.1"
    reply: Reply = field(default_factory=answer)
    port: int = 0
    seen: list[Seen] = field(default_factory=list)

    def __post_init__(self) -> None:
        listener = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                seen = Seen(
                    self.command, self.path, CaseInsensitiveDict(self.headers.items()), body
                )
                listener.seen.append(seen)
                status, headers, raw = listener.reply(seen)
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            do_GET = do_POST = do_PUT = do_DELETE = _any

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer((self.host, self.port), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def url(self, path: str = "", host: str | None = None) -> str:
        """``http://host:port`` + ``path`` (``host`` may spell the address differently)."""
        return f"http://{host or self.host}:{self.port}{path}"

    def everything(self) -> str:
        """All requests received, as one string."""
        return "\n".join(s.text() for s in self.seen)

    def close(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


def fake_finetune_api(secret: str, job_status: str = "failed") -> Reply:
    """An OpenAI-compatible files + fine-tuning API whose every free text holds ``secret``."""
    file = {"id": "file-1", "object": "file", "bytes": 1, "created_at": 1,
            "filename": "t.jsonl", "purpose": "fine-tune", "status": "processed"}  # fmt: skip
    event = {"id": "ev-1", "object": "fine_tuning.job.event", "created_at": 1, "level": "error",
             "message": f"internal detail {secret}", "type": "message"}  # fmt: skip
    job = {"id": "ftjob-1", "object": "fine_tuning.job", "model": "m", "created_at": 1,
           "status": job_status, "fine_tuned_model": None, "training_file": "file-1",
           "error": {"code": "server_error", "message": f"failed: {secret}", "param": None},
           "hyperparameters": {"n_epochs": 1}, "organization_id": "o", "result_files": [],
           "seed": 1}  # fmt: skip

    def reply(seen: Seen) -> tuple[int, dict[str, str], bytes]:
        hdr = {"Content-Type": "application/json"}
        if seen.path.endswith("/files"):
            body: Any = file
        elif "/events" in seen.path:
            body = {"object": "list", "has_more": False, "data": [event]}
        elif "/fine_tuning/jobs" in seen.path:
            body = job
        else:
            return 404, hdr, json.dumps({"error": {"message": secret}}).encode()
        return 200, hdr, json.dumps(body).encode()

    return reply
