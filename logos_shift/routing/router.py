"""The A/B router: which model (or callable) serves a call, decided from memory.

``Router.decide`` runs on the user's call path.  It reads one immutable index
built when a config is loaded (routes by ``(dataset, model)``), hashes the
unit (cached per unit), and returns a prebuilt :class:`Decision`; it never
does I/O, never takes a lock unless a circuit breaker is open, and never waits
for a config.  With no config it returns ``None`` and the call keeps the model
it asked for.

Config sources (a local file, or the Logos server with a disk copy) are polled
by the library's background thread through :meth:`Router.poll`.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from logos_shift import _guard
from logos_shift._settings import Settings, default_cache_dir

from . import breaker as _breaker
from .bucketing import CONTROL, HOLDOUT, assign, bucket_pair
from .config import RouterConfig
from .decision import Compiled, Decision, build_index, targets
from .sources import ConfigPoller, FileSource, ServerSource

logger = logging.getLogger("logos_shift")

#: Bucket cache size (a few MB at most).  When full, the newest entry is
#: dropped (O(1), no pause on the call path), so the cache keeps the units
#: seen first; a miss costs one sha256 (about 1 µs), never more.
_CACHE_MAX = 16_384


class Router:
    """Chooses the model for each call from the current A/B config.

    Args:
        routes: a local JSON routes file (takes precedence over the server).
        server_url: the Logos server; its ``/v1/config`` is polled.
        api_key: the Logos server key (``Authorization: Bearer``).
        state_dir: where the server's last good config is kept on disk
            (default ``$LOGOS_SHIFT_STATE_DIR`` or ``$XDG_CACHE_HOME/logos_shift``).
        refresh_seconds: server polling interval (jittered ±10 %).
        file_check_seconds: how often the routes file's mtime/size are checked.
        timeout: HTTP timeout of a config poll.
        clock: monotonic clock for breakers and polling (tests inject one).
        rng: randomness for units without an id and for jitter.
    """

    def __init__(
        self,
        *,
        routes: str | os.PathLike[str] | None = None,
        server_url: str | None = None,
        api_key: str | None = None,
        state_dir: str | os.PathLike[str] | None = None,
        refresh_seconds: float = 60.0,
        file_check_seconds: float = 1.0,
        timeout: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self._clock = clock
        self._random = rng.random if rng is not None else random.random
        self._config: RouterConfig | None = None
        self._idx: dict[tuple[str | None, str | None], Compiled] = {}
        self._by_name: dict[str, Compiled] = {}
        self._origin: str | None = None
        self._loaded_at: float | None = None
        self._swaps = 0
        self._cache: dict[tuple[str, object], tuple[float, float]] = {}
        self._board = _breaker.BreakerBoard()
        self._due = 0.0
        # Set once the server source's first poll has finished (answered or failed):
        # what wait_for_first_poll() waits for at start-up.
        self._first_poll = threading.Event()
        self.source: ConfigPoller | None = None
        if routes is not None:
            self.source = FileSource(routes, self.set_config, interval=file_check_seconds)
        elif server_url is not None:
            if state_dir is None:
                state_dir = os.environ.get("LOGOS_SHIFT_STATE_DIR") or _default_state_dir()
            server = ServerSource(
                server_url, api_key, state_dir, self.set_config,
                refresh_seconds=refresh_seconds, timeout=timeout, rng=rng,
            )  # fmt: skip
            # Serve the last good config from the first call on; the first poll
            # (due at once) replaces it as soon as the server answers.
            server.load_cached()
            self.source = server
        if isinstance(self.source, FileSource):
            # A local file is cheap to read: load it before the first call.
            self._due = self.source.poll_once(self._clock(), force=True)
        if not isinstance(self.source, ServerSource):
            self._first_poll.set()  # nothing to wait for

    @classmethod
    def from_settings(cls, settings: Settings) -> Router:
        """Build the router a LogosShift instance needs from its settings.

        Args:
            settings: resolved settings (``routes``, ``server_url``, ``api_key``,
                ``state_dir``, ``refresh_seconds``, ``http_timeout``).

        Returns:
            A router; without ``routes`` or ``server_url`` it has no source and
            ``decide`` always returns ``None``.
        """
        return cls(
            routes=settings.routes,
            server_url=settings.server_url,
            api_key=settings.api_key,
            state_dir=settings.state_dir,
            refresh_seconds=settings.refresh_seconds,
            timeout=min(settings.http_timeout, 5.0),
        )

    # -- config ------------------------------------------------------------

    @property
    def config(self) -> RouterConfig | None:
        """The config in force (``None``: no routing, every call keeps its model)."""
        return self._config

    def set_config(self, config: RouterConfig | None, origin: str = "manual") -> None:
        """Swap in a validated config atomically (``None`` turns routing off).

        Args:
            config: a config from :func:`~logos_shift.routing.validate_config`.
            origin: where it came from, shown in ``stats()``.
        """
        _guard.fault("router.config")
        if config is not None and config == self._config:
            self._origin = origin
            return
        idx = build_index(config) if config is not None else {}
        old_targets = targets(self._config)
        new_targets = targets(config)
        keep = {(t[0], t[1]) for t in old_targets & new_targets}
        # Readers see either the old or the new index, never a mix.
        self._idx = idx
        self._by_name = {c.name: c for c in idx.values()}
        self._config = config
        self._origin = origin
        self._loaded_at = time.time()
        self._swaps += 1
        self._board.retain(keep)
        logger.info(
            "logos_shift: routing config %s from %s (%d routes)",
            None if config is None else config.version,
            origin,
            0 if config is None else len(config.routes),
        )

    # -- decisions ---------------------------------------------------------

    def decide(
        self, dataset: str | None, model: str | None, metadata: Mapping[str, Any] | None
    ) -> Decision | None:
        """Choose the arm for a call.  Reads memory only.

        Args:
            dataset: the call's dataset (decorator or ``context``), matched literally.
            model: the model the caller asked for (``None`` for decorated functions).
            metadata: the call's metadata; the route's unit key (``user_id`` by
                default) is the assignment unit.

        Returns:
            The :class:`Decision`, or ``None`` when no route matches (the call
            keeps its model).

        Raises:
            InjectedFault: under failure injection; callers run this inside
                ``_guard.guard("router")`` and keep the requested model on error.
        """
        _guard.fault("router")
        idx = self._idx
        route = idx.get((dataset, model))
        if route is None:
            route = idx.get((dataset, None))
            if route is None:
                route = idx.get((None, model))
                if route is None:
                    return None
        if route.kill:
            return route.control["kill_switch"]
        unit = metadata.get(route.unit) if metadata else None
        if unit is None or (type(unit) is str and not unit):
            reason = "random"
            u = self._random()
            u2 = self._random()
        else:
            reason = "bucket"
            key = (route.prefix, unit)
            try:
                pair = self._cache.get(key)
            except TypeError:  # an unhashable unit value (a list, a dict)
                key = (route.prefix, str(unit))
                pair = self._cache.get(key)
            if pair is None:
                pair = bucket_pair(route.prefix, unit)
                cache = self._cache
                if len(cache) >= _CACHE_MAX:
                    try:
                        cache.popitem()
                    except KeyError:  # emptied by another thread meanwhile
                        pass
                cache[key] = pair
            u, u2 = pair
        arm = assign(u, u2, route.vpct, route.hpct, route.bounds)
        if arm == CONTROL:
            return route.control[reason]
        if arm == HOLDOUT:
            return route.holdout[reason]
        tripped = self._board.tripped
        if tripped and route.keys[arm] in tripped:
            verdict = self._board.allow(route.keys[arm], self._clock(), route.breaker)
            if verdict == _breaker.BLOCK:
                return route.control["breaker_open"]
            if verdict == _breaker.PROBE:
                return route.variants[arm]["probe"]
        return route.variants[arm][reason]

    def record_result(self, route: str, variant: str, ok: bool) -> None:
        """Feed a finished variant call into its circuit breaker.

        Call it for variant arms only (control and holdout results are
        ignored).  A variant call that failed and fell back to control counts
        as ``ok=False``.

        Args:
            route: ``Decision.route``.
            variant: ``Decision.variant``.
            ok: whether the variant's call succeeded.
        """
        _guard.fault("router.record")
        compiled = self._by_name.get(route)
        if compiled is None or (route, variant) not in compiled.keys:
            return
        self._board.record((route, variant), ok, self._clock(), compiled.breaker)

    # -- polling (driven by the background thread) ---------------------------

    def poll(self, now: float | None = None) -> float:
        """Poll the config source if it is due; never raises.

        The library's background thread calls this whenever
        ``clock() >= next_poll_due()``; it may block for up to the HTTP timeout
        (server source), never on the call path.

        Args:
            now: the monotonic time (default: the router's clock).

        Returns:
            The monotonic time the next poll is due (``inf`` without a source).
        """
        if self.source is None:
            self._due = float("inf")
            return self._due
        now = self._clock() if now is None else now
        # If the guard swallows an error (production), try again in a while.
        due = now + 30.0
        try:
            with _guard.guard("router.poll"):
                due = self.source.poll_once(now)
        finally:
            self._first_poll.set()
        self._due = due
        return due

    def next_poll_due(self) -> float:
        """Return the monotonic time at which :meth:`poll` should next be called."""
        return float("inf") if self.source is None else self._due

    def refresh_now(self) -> None:
        """Poll the config source at once, ignoring its schedule (tests, CLI)."""
        if self.source is not None:
            try:
                self._due = self.source.poll_once(self._clock(), force=True)
            finally:
                self._first_poll.set()

    def wait_for_first_poll(self, timeout: float) -> bool:
        """Wait until the server's config has been fetched once (or that fetch failed).

        The background thread makes the fetch; this only waits for it, at most
        ``timeout`` seconds.  Returns at once for a routes file (read in the
        constructor) or no source.

        Args:
            timeout: the most seconds to wait.

        Returns:
            True when the first poll has finished, False on the timeout.
        """
        return self._first_poll.wait(max(0.0, timeout))

    # -- introspection -------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Return the config in force, the source's health and every breaker.

        Returns:
            ``{"config": {"version", "routes", "origin", "loaded_at", "swaps"},
            "source": {...} or None, "breakers": {"route/variant": {...}}}``.
        """
        cfg = self._config
        return {
            "config": {
                "version": None if cfg is None else cfg.version,
                "routes": 0 if cfg is None else len(cfg.routes),
                "origin": self._origin,
                "loaded_at": self._loaded_at,
                "swaps": self._swaps,
            },
            "source": None if self.source is None else self.source.stats(),
            "breakers": self._board.snapshot(self._clock()),
        }

    def reset_after_fork(self) -> None:
        """Rebuild what a forked child must not share (the HTTP session)."""
        if isinstance(self.source, ServerSource):
            self.source.reset_after_fork()

    def close(self) -> None:
        """Release the config source's sockets."""
        if self.source is not None:
            self.source.close()


def _default_state_dir() -> str:
    return str(default_cache_dir())


__all__ = ["Decision", "Router"]
