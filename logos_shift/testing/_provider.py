"""The fake provider's server: recorded requests, scripts, and the route table per API."""

from __future__ import annotations

import json
import sys
import threading
import traceback
import urllib.parse
from dataclasses import dataclass, field, replace
from typing import Any

from . import _anthropic, _google_genai, _openai, _responses
from ._common import Event
from ._finetune import FineTuneStore
from ._server import FakeServer, Handler


@dataclass(frozen=True)
class RecordedRequest:
    """One request the fake provider received.

    Attributes:
        method: HTTP method.
        path: URL path without the query string (e.g. ``/v1/chat/completions``).
        query: Query parameters (e.g. ``{"beta": "true"}`` from the anthropic beta client).
        headers: Request headers with lower-case names.
        body: The JSON-decoded body, or ``None`` when it is not JSON.
        raw: The raw body bytes.
    """

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    raw: bytes

    @property
    def model(self) -> str | None:
        """The ``model`` field of a JSON body, if any."""
        return self.body.get("model") if isinstance(self.body, dict) else None


@dataclass
class Script:
    """Scripted behaviour for the next matching request(s); see :meth:`FakeProvider.script`."""

    status: int | None = None
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    retry_after: float | None = None
    text: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    stop_reason: str | None = None
    chunks: int | None = None
    chunk_delay: float = 0.0
    disconnect_after_chunks: int | None = None
    error_after_chunks: int | None = None
    error_message: str | None = None
    latency: float = 0.0
    times: int | None = 1
    path: str | None = None
    model: str | None = None
    used: int = 0

    def matches(self, path: str, model: str | None, inference: bool) -> bool:
        """Tell whether this script applies to a request.

        Args:
            path: The request path.
            model: The requested model.
            inference: Whether the path is a model endpoint (chat, responses,
                embeddings, messages); scripts without ``path`` only apply there.

        Returns:
            True when the path and model filters accept the request.
        """
        if self.path is None:
            path_ok = inference
        elif self.path.endswith("*"):
            path_ok = path.startswith(self.path[:-1])
        else:
            path_ok = path == self.path
        return path_ok and (self.model is None or self.model == model)


_INFERENCE = {
    "/v1/chat/completions": "chat",
    "/v1/responses": "responses",
    "/v1/embeddings": "embeddings",
    "/v1/messages": "messages",
    "/v1/messages/count_tokens": "count_tokens",
}


class FakeProvider:
    """A local, scriptable OpenAI- and Anthropic-compatible server.

    Use it as a context manager (``with FakeProvider() as fp:``) or call
    :meth:`start` / :meth:`stop`.  Point clients at :attr:`openai_base_url`
    (``openai.OpenAI(base_url=fp.openai_base_url, api_key="test")``) or
    :attr:`anthropic_base_url` (``anthropic.Anthropic(base_url=..., api_key="test")``).

    Args:
        chunks: Default number of pieces a streamed reply's text is split into.
        embedding_dims: Embedding size when a request does not set ``dimensions``.
    """

    def __init__(self, *, chunks: int = 5, embedding_dims: int = 16) -> None:
        """Create a stopped provider (see the class docstring for the arguments)."""
        self.chunks = chunks
        self.embedding_dims = embedding_dims
        #: Unexpected exceptions raised while handling requests (a fake-server bug).
        self.errors: list[BaseException] = []
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._scripts: list[Script] = []
        self._failing: dict[str, Script] = {}
        self._finetune = FineTuneStore()
        self._server: FakeServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> FakeProvider:
        """Start serving on a free port of ``127.0.0.1`` in a daemon thread.

        Returns:
            This provider.

        Raises:
            RuntimeError: If it is already running.
        """
        if self._server is not None:
            raise RuntimeError("FakeProvider is already running")
        self._server = FakeServer(self._dispatch, self._on_error)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the server and close every socket, including clients' keep-alive ones."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.close_all()
        if thread is not None:
            thread.join(5)

    def __enter__(self) -> FakeProvider:
        """Start the server (if needed) and return the provider."""
        return self if self._server is not None else self.start()

    def __exit__(self, *exc_info: object) -> None:
        """Stop the server."""
        self.stop()

    @property
    def url(self) -> str:
        """Base URL such as ``http://127.0.0.1:54321``.

        Raises:
            RuntimeError: If the server is not running.
        """
        if self._server is None:
            raise RuntimeError("FakeProvider is not running; call start() or use `with`")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def openai_base_url(self) -> str:
        """``base_url`` for the openai SDK (``url + "/v1"``)."""
        return self.url + "/v1"

    @property
    def anthropic_base_url(self) -> str:
        """``base_url`` for the anthropic SDK (``url``)."""
        return self.url

    @property
    def gemini_base_url(self) -> str:
        """``http_options.base_url`` for the google-genai SDK (``url``; it adds ``/v1beta``)."""
        return self.url

    # -- recorded requests -------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of every request received so far, oldest first."""
        with self._lock:
            return list(self._requests)

    def clear(self) -> None:
        """Forget the recorded requests (scripts and model failures stay)."""
        with self._lock:
            self._requests.clear()

    def reset(self) -> None:
        """Forget recorded requests, pending scripts and model failures."""
        with self._lock:
            self._requests.clear()
            self._scripts.clear()
            self._failing.clear()

    # -- scripting ---------------------------------------------------------

    def script(
        self,
        *,
        status: int | None = None,
        body: Any = None,
        headers: dict[str, str] | None = None,
        retry_after: float | None = None,
        text: str | None = None,
        tool_calls: list[dict[str, Any]] | None = None,
        stop_reason: str | None = None,
        chunks: int | None = None,
        chunk_delay: float = 0.0,
        disconnect_after_chunks: int | None = None,
        error_after_chunks: int | None = None,
        error_message: str | None = None,
        latency: float = 0.0,
        times: int | None = 1,
        path: str | None = None,
        model: str | None = None,
    ) -> Script:
        """Script the next matching request(s).

        Scripts are consumed first-in first-out: each request uses the oldest
        pending script whose ``path`` / ``model`` filters match.  A script without
        ``path`` only applies to the model endpoints (chat completions, responses,
        embeddings, messages), never to files or fine-tuning.

        Args:
            status: Answer with this HTTP error status and the provider's error JSON
                (OpenAI shape, Anthropic shape under ``/v1/messages``), so the SDKs
                raise ``RateLimitError`` (429), ``NotFoundError`` (404,
                ``model_not_found``), ``InternalServerError`` (500) and so on.
            body: Error body to send instead of the default (dict → JSON, str as is).
            headers: Extra response headers.
            retry_after: Seconds to send in ``retry-after`` / ``retry-after-ms``.
            text: The assistant's text instead of the echo.
            tool_calls: Tool calls to make: ``[{"name": ..., "arguments": {...} or
                "json", "id": optional}]``.
            stop_reason: Override ``finish_reason`` / ``stop_reason`` (e.g. ``"length"``).
            chunks: Pieces the streamed text is split into (default: the
                provider's ``chunks``).
            chunk_delay: Seconds between streamed events.
            disconnect_after_chunks: Streams: drop the connection after this many
                SSE events.  Non-streamed requests: drop it without answering.
            error_after_chunks: Streams: after this many events send the provider's
                mid-stream error (OpenAI chat: an ``{"error": ...}`` chunk; responses:
                an ``error`` event; Anthropic: ``event: error``, overloaded) and end.
            error_message: Message of that mid-stream error.
            latency: Seconds to wait before answering.
            times: How many requests this applies to (``None``: every one).
            path: Only requests to this path (a trailing ``*`` matches a prefix).
            model: Only requests for this model.

        Returns:
            The script; its ``used`` attribute counts the requests it answered.
        """
        entry = Script(
            status=status,
            body=body,
            headers=dict(headers or {}),
            retry_after=retry_after,
            text=text,
            tool_calls=tool_calls,
            stop_reason=stop_reason,
            chunks=chunks,
            chunk_delay=chunk_delay,
            disconnect_after_chunks=disconnect_after_chunks,
            error_after_chunks=error_after_chunks,
            error_message=error_message,
            latency=latency,
            times=times,
            path=path,
            model=model,
        )
        with self._lock:
            self._scripts.append(entry)
        return entry

    def fail_model(
        self,
        model: str,
        status: int = 500,
        *,
        body: Any = None,
        headers: dict[str, str] | None = None,
        retry_after: float | None = None,
        latency: float = 0.0,
    ) -> None:
        """Make every request for ``model`` fail until :meth:`heal_model`.

        Checked before scripts, and does not consume them.

        Args:
            model: The model name (e.g. a fine-tuned ``ft:...`` model).
            status: HTTP status to answer with (404 gives ``model_not_found``).
            body: Error body instead of the provider's default.
            headers: Extra response headers.
            retry_after: Seconds to send in ``retry-after``.
            latency: Seconds to wait before failing.
        """
        entry = Script(
            status=status,
            body=body,
            headers=dict(headers or {}),
            retry_after=retry_after,
            latency=latency,
            times=None,
            model=model,
        )
        with self._lock:
            self._failing[model] = entry

    def heal_model(self, model: str | None = None) -> None:
        """Undo :meth:`fail_model` for ``model`` (every model when ``None``).

        Args:
            model: The model to restore.
        """
        with self._lock:
            if model is None:
                self._failing.clear()
            else:
                self._failing.pop(model, None)

    # -- fine-tuning -------------------------------------------------------

    def finetune_schedule(
        self,
        *,
        seconds_per_phase: float | None = None,
        retrieves_per_phase: int | None = None,
        outcome: str | None = None,
        error: dict[str, Any] | None = None,
        min_examples: int | None = None,
    ) -> None:
        """Set how fine-tuning jobs created from now on progress.

        A job goes ``validating_files → queued → running → succeeded`` (or
        ``failed``).  By default each phase lasts 0.2 s; with
        ``retrieves_per_phase=n`` it instead advances every ``n`` job retrievals, so
        a test can step through it deterministically.  On success the job's
        ``fine_tuned_model`` is ``ft:<base>:fake:<suffix>:<job id>``, a name the fake
        then serves like any other.

        Args:
            seconds_per_phase: Seconds per phase (0: done at the first read).
            retrieves_per_phase: Retrievals per phase (overrides the time schedule;
                pass 0 to go back to time).
            outcome: ``"succeeded"`` or ``"failed"``.
            error: The failed job's ``error`` object (``code``, ``message``, ``param``).
            min_examples: Fewest training examples a file may hold (default 10).
        """
        changes: dict[str, Any] = {}
        if seconds_per_phase is not None:
            changes["seconds_per_phase"] = seconds_per_phase
        if retrieves_per_phase is not None:
            changes["retrieves_per_phase"] = retrieves_per_phase or None
        if outcome is not None:
            if outcome not in ("succeeded", "failed"):
                raise ValueError("outcome must be 'succeeded' or 'failed'")
            changes["outcome"] = outcome
        if error is not None:
            changes["error"] = error
        if min_examples is not None:
            changes["min_examples"] = min_examples
        self._finetune.set_schedule(**changes)

    def file_content(self, file_id: str) -> bytes:
        """Return the bytes of an uploaded file.

        Args:
            file_id: The ``file-...`` id.

        Returns:
            The content.

        Raises:
            KeyError: For an unknown id.
        """
        return self._finetune.files[file_id][1]

    def fine_tuned_models(self) -> list[str]:
        """Return the model names produced by succeeded fine-tuning jobs."""
        return self._finetune.served_models()

    # -- request handling (called on the server's threads) -----------------

    def _on_error(self, exc: BaseException) -> None:
        self.errors.append(exc)
        traceback.print_exception(exc, file=sys.stderr)

    def _pick(self, path: str, model: str | None, inference: bool) -> Script | None:
        with self._lock:
            if inference and model in self._failing:
                return self._failing[model]
            for entry in self._scripts:
                if entry.matches(path, model, inference):
                    entry.used += 1
                    if entry.times is not None and entry.used >= entry.times:
                        self._scripts.remove(entry)
                    return entry
        return None

    def _dispatch(self, h: Handler) -> None:
        """Answer one request on the handler's connection."""
        url = urllib.parse.urlsplit(h.path)
        path = url.path.rstrip("/") or "/"
        raw = h.read_body()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        headers = {k.lower(): v for k, v in h.headers.items()}
        request = RecordedRequest(
            h.command, path, dict(urllib.parse.parse_qsl(url.query)), headers, body, raw
        )
        with self._lock:
            self._requests.append(request)
        gemini = _google_genai.parse_path(path) if h.command == "POST" else None
        if gemini is not None:
            self._gemini(h, path, gemini, body)
            return
        kind = _INFERENCE.get(path) if h.command == "POST" else None
        anthropic_shape = path.startswith("/v1/messages")
        entry = self._pick(path, request.model, kind is not None) or Script()
        if entry.latency and h.wait(entry.latency):
            return  # the server is stopping
        if entry.status is not None:
            hdrs = dict(entry.headers)
            if entry.retry_after is not None:
                hdrs["retry-after"] = f"{entry.retry_after:g}"
                hdrs["retry-after-ms"] = f"{entry.retry_after * 1000:g}"
            make = _anthropic.error_body if anthropic_shape else _openai.error_body
            h.send_json(
                entry.status,
                make(entry.status, request.model) if entry.body is None else entry.body,
                hdrs,
            )
            return
        stream = isinstance(body, dict) and body.get("stream") is True
        if entry.disconnect_after_chunks is not None and (
            not stream or entry.disconnect_after_chunks <= 0
        ):
            h.drop()
            return
        if kind is None:
            result = self._finetune.handle(h.command, path, request.query, headers, raw)
            if result is None and h.command == "GET" and path.startswith("/v1/models"):
                result = _openai.models(path, self._finetune.served_models())
            if result is None:
                result = (
                    404,
                    _openai.error_body(404, message=f"Unknown path {h.command} {path}"),
                )
            h.send_json(result[0], result[1], entry.headers)
        elif not isinstance(body, dict) or not body.get("model"):
            make = _anthropic.error_body if anthropic_shape else _openai.error_body
            h.send_json(400, make(400, message="The request body must be JSON with a 'model'."), {})
        else:
            self._answer(h, kind, body, stream, entry)

    def _gemini(self, h: Handler, path: str, target: tuple[str, str], body: Any) -> None:
        """Answer a Gemini API request (the model is the path's)."""
        model, method = target
        entry = self._pick(path, model, True) or Script()
        if entry.latency and h.wait(entry.latency):
            return
        if entry.status is not None:
            hdrs = dict(entry.headers)
            if entry.retry_after is not None:
                hdrs["retry-after"] = f"{entry.retry_after:g}"
            err = entry.body
            h.send_json(entry.status, _google_genai.error_body(entry.status, model)
                        if err is None else err, hdrs)  # fmt: skip
            return
        stream = method == "streamGenerateContent"
        if entry.disconnect_after_chunks is not None and (
            not stream or entry.disconnect_after_chunks <= 0
        ):
            h.drop()
            return
        if not isinstance(body, dict):
            h.send_json(400, _google_genai.error_body(400, message="The body must be JSON."), {})
            return
        if method in ("embedContent", "batchEmbedContents"):
            data = _google_genai.embed_json(model, method, body, self.embedding_dims)
            h.send_json(200, data, entry.headers)
            return
        if method not in ("generateContent", "streamGenerateContent"):
            h.send_json(404, _google_genai.error_body(404, model), {})
            return
        reply = replace(
            _google_genai.plan(body, entry.text, entry.tool_calls),
            chunks=entry.chunks or self.chunks,
            stop_reason=entry.stop_reason,
            disconnect_after_chunks=entry.disconnect_after_chunks,
            error_after_chunks=entry.error_after_chunks,
            chunk_delay=entry.chunk_delay,
        )
        if not stream:
            h.send_json(200, _google_genai.generate_json(model, body, reply), entry.headers)
            return
        events = _google_genai.generate_events(model, body, reply)
        error = _google_genai.stream_error_data(entry.error_message)
        h.send_sse(events, reply, error, entry.headers)

    def _answer(
        self, h: Handler, kind: str, body: dict[str, Any], stream: bool, entry: Script
    ) -> None:
        if kind == "embeddings":
            h.send_json(200, _openai.embeddings_json(body, self.embedding_dims), entry.headers)
            return
        if kind == "count_tokens":
            h.send_json(200, {"input_tokens": _anthropic.input_tokens(body)}, entry.headers)
            return
        planner = {
            "chat": _openai.plan_chat,
            "responses": _responses.plan_responses,
            "messages": _anthropic.plan_messages,
        }[kind]
        reply = replace(
            planner(body, entry.text, entry.tool_calls),
            chunks=entry.chunks or self.chunks,
            stop_reason=entry.stop_reason,
            disconnect_after_chunks=entry.disconnect_after_chunks,
            error_after_chunks=entry.error_after_chunks,
            chunk_delay=entry.chunk_delay,
        )
        if not stream:
            render = {
                "chat": _openai.chat_json,
                "responses": _responses.responses_json,
                "messages": _anthropic.message_json,
            }[kind]
            h.send_json(200, render(body, reply), entry.headers)
            return
        events = {
            "chat": _openai.chat_events,
            "responses": _responses.responses_events,
            "messages": _anthropic.message_events,
        }[kind](body, reply)
        error: Event
        if kind == "chat":
            error = (None, _openai.stream_error_data(entry.error_message))
        elif kind == "responses":
            error = _responses.responses_error_event(
                reply.error_after_chunks or 0, entry.error_message
            )
        else:
            error = _anthropic.stream_error_event(entry.error_message)
        h.send_sse(events, reply, error, entry.headers)
