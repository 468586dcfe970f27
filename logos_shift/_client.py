"""``LogosShift``: settings, destinations, flush, stats and shutdown.

Several instances may coexist (say, one per dataset or destination); they
share the process's single background thread.  Which instance a capture goes
to is decided in one place, :func:`logos_shift._capture.scope.current_instance`:
the instance whose decorated function is running, else the one activated with
:meth:`LogosShift.activate`, else the *default* instance (the last one made by
:func:`init`, or the first one constructed if ``init`` was never called).  No
capture rule lives in this module.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import weakref
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NotRequired, TypedDict, TypeVar, Unpack, overload

from . import _guard, _settings
from ._capture import record as _record
from ._capture import scope as _scope
from ._capture.decorator import decorate
from ._capture.instance import Instance, check_target
from ._capture.routed import decorate_routed
from ._transport import serialize as _serialize
from ._transport.channel import Channel
from ._transport.sinks import FileSink, HttpSink, Sink
from ._transport.spool import Spool
from ._transport.worker import WORKER

logger = logging.getLogger("logos_shift")

F = TypeVar("F", bound=Callable[..., Any])
Redact = Callable[[dict[str, Any]], "dict[str, Any] | None"]


class SpoolStats(TypedDict):
    """The on-disk spool's counters (with a ``server_url`` only)."""

    dir: str
    available: bool
    write_errors: int
    evicted_records: int
    corrupt_files: int
    too_big: int
    skipped_files: int  # foreign names, pids or file types in the spool, left alone
    unreadable_files: int  # batches this process could not read (retried later)
    config_error: bool  # the server refused this destination's key or URL (401/403/404)
    quarantined: list[str]  # paths of batches set aside as corrupt


class Stats(TypedDict):
    """What :meth:`LogosShift.stats` returns.

    ``captured == sent + spooled + dropped + pending`` always holds.
    """

    captured: int
    sent: int
    spooled: int
    dropped: int
    dropped_by_reason: dict[str, int]
    pending: int
    queued_bytes: int
    replayed: int
    replay_rejected: int
    retries: int
    consecutive_failures: int
    slow: int  # uploads still running past their deadline (2 x flush_interval, >= 1 s)
    last_success_ts: float | None
    last_error: str | None
    local_copy_errors: int
    sent_bytes: int
    spool: NotRequired[SpoolStats]
    internal_errors: dict[str, int]
    placeholders: dict[str, int]
    router: NotRequired[dict[str, Any]]


class LogosShift:
    """Captures calls and feedback and ships them off the caller's thread.

    Args:
        api_key: key for the Logos server (``LOGOS_SHIFT_API_KEY``). ``None``
            keeps everything local.
        server_url: the Logos server, e.g. ``http://localhost:8600``
            (``LOGOS_SHIFT_SERVER_URL``).
        filename: path of the local JSONL copy (``LOGOS_SHIFT_FILENAME``).
        routes: path of a local routes file for the router
            (``LOGOS_SHIFT_ROUTES``).
        redact: optional function called on every record (a dict) on the
            background thread before it is written; return the (possibly
            changed) record, or ``None`` to drop it.
        sink: an extra local destination that receives every batch, such as
            :class:`logos_shift.MemorySink` (see :class:`logos_shift.Sink`).
        wait_for_config: with a ``server_url``, how many seconds the constructor
            waits for the first routing config from the server, so the first
            calls are routed (default 2.0; 0 = don't wait).  It returns as soon
            as the server answered or the fetch failed; it never waits without
            a server, and a routes file is read at once.
        **settings: any other setting of the README's configuration table.

    Raises:
        ValueError: a setting is invalid (negative size, malformed URL, a file
            path that cannot be written).
        TypeError: an unknown setting was given.

    Example:
        >>> import logos_shift, tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "calls.jsonl")
        >>> ls = logos_shift.LogosShift(api_key=None, filename=path)
        >>> @ls(dataset="sales")
        ... def add_sales(x, y):
        ...     return {"sum": x + y}
        >>> add_sales(1, 2)["sum"]
        3
        >>> ls.shutdown()
        True
    """

    def __init__(
        self,
        api_key: str | None = None,
        server_url: str | None = None,
        filename: str | None = None,
        routes: str | None = None,
        *,
        redact: Redact | None = None,
        sink: Sink | None = None,
        wait_for_config: float | None = None,
        **settings: Unpack[_settings.SettingsKwargs],
    ) -> None:
        args = {"api_key": api_key, "server_url": server_url, "filename": filename,
                "routes": routes, **settings}  # fmt: skip
        self.settings = _settings.resolve(args)
        if redact is not None and not callable(redact):
            raise ValueError("redact must be a callable taking and returning a record dict")
        if sink is not None and not callable(getattr(sink, "write", None)):
            raise ValueError("sink must have a write(lines) method, like logos_shift.MemorySink")
        s = self.settings
        if s.api_key and not s.server_url:
            raise ValueError("api_key is set but server_url is not: where should records go?")
        file = (
            FileSink(s.filename, s.file_max_bytes, s.file_backups, s.file_fsync)
            if s.filename
            else None
        )
        http = HttpSink(s.server_url, s.api_key, s.http_timeout) if s.server_url else None
        spool = None
        if http is not None:
            spool = Spool(_spool_dir(s), s.spool_max_bytes, s.spool_max_files, s.spool_max_age)
        if file is None and http is None and sink is None:
            logger.warning(
                "LogosShift has no destination (no filename, no server_url): "
                "captured records are counted as dropped"
            )
        prepare = functools.partial(
            _record.prepare, capture_content=s.capture_content, redact=redact
        )
        self._channel = Channel(s, file, http, spool, sink, prepare)
        self._instance = Instance(s, self._channel, self)
        WORKER.add(self._channel)
        wait = _wait_seconds(wait_for_config, s)
        with _guard.guard("router.init"):
            self._start_router(wait)
        _scope.set_default_if_unset(self._instance)

    # -- capture -------------------------------------------------------------

    @overload
    def __call__(self, dataset: F) -> F: ...
    @overload
    def __call__(
        self, dataset: str | None = None, *, metadata: Mapping[str, Any] | None = None,
        variants: Mapping[str, Callable[..., Any]] | None = None,
    ) -> Callable[[F], F]: ...  # fmt: skip

    def __call__(
        self,
        dataset: Any = None,
        *,
        metadata: Mapping[str, Any] | None = None,
        variants: Mapping[str, Callable[..., Any]] | None = None,
    ) -> Any:
        """Decorate a function so every call is captured.

        Works for sync and async functions, sync and async generators,
        methods, classmethods and staticmethods.  Each call records its
        arguments by parameter name, its result or exception, the latency,
        the dataset, ``module:qualname`` and metadata.  Pass
        ``logos_shift_metadata={...}`` to the decorated function to attach
        metadata to one call (it is removed before the function is called).
        A ``dict`` result gains a ``"logos_shift_id"`` key (turn off with
        ``add_id_to_result=False``); :func:`logos_shift.last_call_id` gives the
        id for any result.

        Args:
            dataset: the dataset the calls belong to (default: the context's
                dataset, else the instance's ``dataset`` setting).
            metadata: metadata attached to every call of this function.
            variants: alternative implementations by name, for A/B routing.

        Returns:
            The decorator (or the decorated function, used as ``@ls``).

        Raises:
            TypeError: ``dataset`` is neither a string nor a function.
        """
        if callable(dataset) and not isinstance(dataset, str):
            return decorate(self._instance, dataset, None, metadata)
        if dataset is not None and not isinstance(dataset, str):
            raise TypeError("dataset must be a string")
        if variants is not None:
            _check_variants(variants)

        def wrap(func: F) -> F:
            if variants:
                return decorate_routed(self._instance, func, dataset, metadata, variants)
            return decorate(self._instance, func, dataset, metadata)

        return wrap

    # -- feedback ------------------------------------------------------------

    def provide_feedback(
        self,
        target_id: str,
        outcome: str | bool,
        *,
        score: float | None = None,
        comment: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> str | None:
        """Record feedback on a captured call.

        Args:
            target_id: a logos-shift id (``result["logos_shift_id"]``,
                ``resp.logos_shift_id``, :func:`logos_shift.last_call_id`) or
                the provider's own response id (``chatcmpl-…``, ``msg_…``,
                ``resp_…``).
            outcome: ``"success"``, ``"failure"`` or ``"neutral"`` (``True`` /
                ``False`` are accepted for success / failure).
            score: optional number, e.g. a rating.
            comment: optional free text.
            metadata: optional extra data.

        Returns:
            The feedback record's id, or ``None`` if it could not be recorded
            (a bad ``outcome`` or ``score`` is logged, never raised).

        Raises:
            ValueError: ``target_id`` is empty or not a string.

        Example:
            >>> import logos_shift
            >>> ls = logos_shift.LogosShift(sink=logos_shift.MemorySink())
            >>> ls.provide_feedback("chatcmpl-123", "success", score=1.0) is not None
            True
            >>> ls.shutdown()
            True
        """
        check_target(target_id)
        result: str | None = None
        with _guard.guard("feedback"):
            result = self._instance.feedback(target_id, outcome, score, comment, metadata)
        return result

    # -- lifecycle -----------------------------------------------------------

    def flush(self, timeout: float = 5.0) -> bool:
        """Deliver (or spool) everything captured so far.

        Args:
            timeout: seconds to wait at most.

        Returns:
            True if nothing is left in memory (sent, spooled or dropped).
        """
        ok = False
        with _guard.guard("flush"):
            ok = WORKER.flush(self._channel, timeout)
        return ok

    def shutdown(self, timeout: float | None = None) -> bool:
        """Flush and stop this instance; later captures are dropped.

        Uploads until 60% of ``timeout``, then spools what is left, so nothing
        is lost when the server is away.

        Args:
            timeout: seconds (default: the ``shutdown_timeout`` setting, 5).

        Returns:
            True if every record was sent, spooled or dropped in time.
        """
        if self._instance.closed:
            return True
        ok = False
        with _guard.guard("shutdown"):
            self._stop_router()
            ok = WORKER.close(
                self._channel, self.settings.shutdown_timeout if timeout is None else timeout
            )
        self._instance.closed = True
        _scope.clear_default(self._instance)
        return ok

    def stats(self) -> Stats:
        """Counters of this instance.

        ``captured == sent + spooled + dropped + pending`` always holds, and
        ``pending`` is 0 after a successful :meth:`flush`.

        Returns:
            A dict with ``captured``, ``sent``, ``spooled``, ``dropped``,
            ``dropped_by_reason``, ``pending``, ``replayed``, ``retries``,
            ``consecutive_failures``, ``slow`` (uploads past their deadline),
            ``last_error`` (the cause and the fix of a 401/403/404 included),
            spool details (``skipped_files``, ``unreadable_files``,
            ``config_error``, ``quarantined``, …), ``internal_errors`` and,
            with routing on, ``router``.
        """
        out: Stats = self._channel.stats()  # type: ignore[assignment]
        out["internal_errors"] = dict(_guard.ERRORS)
        out["placeholders"] = dict(_serialize.PLACEHOLDERS)
        router = self._instance.router
        if router is not None:
            with _guard.guard("router.stats"):
                out["router"] = router.stats()
        return out

    @contextmanager
    def activate(self) -> Iterator[LogosShift]:
        """Send SDK captures and feedback made inside the block to this instance."""
        token = _scope.ACTIVE.set(self._instance)
        try:
            yield self
        finally:
            _scope.ACTIVE.reset(token)

    @contextmanager
    def as_default(self) -> Iterator[LogosShift]:
        """Make this instance the process default inside the block.

        Unlike :meth:`activate` (this thread or task only), the default serves
        every thread.  The previous default is restored afterwards.
        """
        previous = _scope.set_default(self._instance)
        try:
            yield self
        finally:
            _scope.set_default(previous)

    def _start_router(self, wait: float) -> None:
        """Build the router when routes come from a file or the server.

        The config is polled by the shared background thread (never on the
        call path); a local file is read once right here so the first call is
        already routed, and the server's last good config is loaded from disk.
        With a server, the constructor then waits up to ``wait`` seconds for the
        background thread's first fetch, so the first calls are routed too.
        """
        s = self.settings
        if s.routes is None and s.server_url is None:
            return
        from .routing.router import Router

        router = Router.from_settings(s)
        self._instance.router = router
        _routers.add(router)
        if s.routes is not None and not os.path.exists(s.routes):
            logger.warning(
                "logos_shift: routes file %s does not exist (yet): every call keeps its own "
                "model until it appears (it is checked about once a second)",
                os.path.abspath(s.routes),
            )

        def poll(now: float) -> float:
            due = router.poll(now)
            return max(0.05, min(due - now, 3600.0))

        WORKER.add_task(id(self), poll)
        if wait > 0 and s.routes is None:
            WORKER.notify()  # start the thread now: its first task run is the fetch
            if not router.wait_for_first_poll(wait):
                logger.warning(
                    "logos_shift: no routing config from %s within wait_for_config=%gs; "
                    "calls use the last saved config or their own model until it arrives",
                    s.server_url,
                    wait,
                )

    def _stop_router(self) -> None:
        """Stop polling route config."""
        router = self._instance.router
        if router is not None:
            WORKER.remove_task(id(self))
            with _guard.guard("router.close"):
                router.close()

    @property
    def router(self) -> Any:
        """The router of this instance, or ``None`` without routes."""
        return self._instance.router


#: Default of ``wait_for_config`` when a server URL is set (seconds).
DEFAULT_WAIT_FOR_CONFIG = 2.0


def _wait_seconds(wait: object, s: _settings.Settings) -> float:
    """How long the constructor waits for the server's first routing config."""
    if wait is None:
        return DEFAULT_WAIT_FOR_CONFIG if s.server_url and s.routes is None else 0.0
    if isinstance(wait, bool) or not isinstance(wait, (int, float)) or not wait >= 0:
        raise ValueError(f"wait_for_config must be a number of seconds >= 0, got {wait!r}")
    return float(wait)


def _check_variants(variants: object) -> None:
    if not isinstance(variants, Mapping):
        raise TypeError("variants must be a mapping of names to callables")
    for name, fn in variants.items():
        if not isinstance(name, str) or not name or not callable(fn):
            raise TypeError(f"variants[{name!r}] must map a non-empty name to a callable")


def _spool_dir(s: _settings.Settings) -> Path:
    base = Path(s.spool_dir) if s.spool_dir else _settings.default_cache_dir() / "spool"
    # One sub-directory per destination: a batch must only ever be replayed
    # to the server (and key) it was meant for.
    key = hashlib.sha256(f"{s.server_url}\0{s.api_key or ''}".encode()).hexdigest()[:16]
    return base / key


# Routers of live instances, so a forked child drops the parent's HTTP pool.
_routers: weakref.WeakSet[Any] = weakref.WeakSet()


def _routers_after_fork() -> None:
    for router in list(_routers):
        with _guard.guard("router.fork"):
            router.reset_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_routers_after_fork)


def init(
    api_key: str | None = None,
    server_url: str | None = None,
    filename: str | None = None,
    routes: str | None = None,
    *,
    wait_for_config: float | None = None,
    **settings: Unpack[_settings.SettingsKwargs],
) -> LogosShift:
    """Create a :class:`LogosShift` and make it the default instance.

    The default instance receives SDK calls captured by ``patch_openai()``
    and friends, and :func:`provide_feedback` calls.  Arguments override the
    ``LOGOS_SHIFT_*`` environment variables, which override the defaults.

    With a ``server_url``, ``init`` waits up to ``wait_for_config`` seconds
    (default 2.0) for the server's routing config, so the first calls of the
    process are already routed; it returns as soon as the server answered (or
    could not be reached), and never waits without a server.

    Returns:
        The new instance.

    Raises:
        ValueError: a setting is invalid.

    Example:
        >>> import logos_shift
        >>> ls = logos_shift.init(sink=logos_shift.MemorySink())
        >>> logos_shift.get_client() is ls
        True
        >>> ls.shutdown()
        True
    """
    client = LogosShift(api_key=api_key, server_url=server_url, filename=filename,
                        routes=routes, wait_for_config=wait_for_config, **settings)  # fmt: skip
    _scope.set_default(client._instance)
    return client


def get_client() -> LogosShift | None:
    """Return the default instance, or None if there is none."""
    inst = _scope.default_instance()
    return None if inst is None else inst.owner  # type: ignore[return-value]


def provide_feedback(
    target_id: str,
    outcome: str | bool,
    *,
    score: float | None = None,
    comment: str | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> str | None:
    """Record feedback through the instance in scope (see :meth:`LogosShift.provide_feedback`).

    The instance is found as for calls
    (:func:`logos_shift._capture.scope.current_instance`): the one whose
    decorated function is running, else the one activated with
    :meth:`LogosShift.activate`, else the default instance.

    Raises:
        ValueError: ``target_id`` is empty or not a string.
    """
    check_target(target_id)
    inst = _scope.current_instance()
    if inst is None:
        logger.warning("provide_feedback: no LogosShift instance; call logos_shift.init() first")
        return None
    result: str | None = None
    with _guard.guard("feedback"):
        result = inst.feedback(target_id, outcome, score, comment, metadata)
    return result


@contextmanager
def context(
    dataset: str | None = None, user_id: str | None = None, **metadata: Any
) -> Iterator[None]:
    """Apply a dataset and metadata to everything captured inside the block.

    Contexts nest (inner values win) and follow threads started with
    ``contextvars.copy_context()`` and every asyncio task.  ``user_id`` is the
    A/B unit for the router.

    Example:
        >>> import logos_shift
        >>> with logos_shift.context(dataset="support", user_id="u42", plan="pro"):
        ...     pass
    """
    if user_id is not None:
        metadata["user_id"] = user_id
    with _scope.push(dataset=dataset, metadata=metadata or None):
        yield
