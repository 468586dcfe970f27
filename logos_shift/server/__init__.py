"""The self-hosted Logos server (the ``server`` extra; ``postgres`` adds PostgreSQL's driver).

Programmatic use::

    from logos_shift.server import RolloutSettings, create_app, serve_in_thread

    app = create_app("sqlite:///logos.db", rollout=RolloutSettings(interval_s=5.0))
    with serve_in_thread(app) as server:
        print(server.url)

The command line equivalent is ``logos-shift server``.  Names are imported
lazily, so ``import logos_shift.server._something`` does not pull in FastAPI.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._serve import (
        PortInUse as PortInUse,
    )
    from ._serve import (
        RunningServer as RunningServer,
    )
    from ._serve import (
        bind as bind,
    )
    from ._serve import (
        run as run,
    )
    from ._serve import (
        serve_in_thread as serve_in_thread,
    )
    from .app import create_app as create_app
    from .finetune.backend import FineTuneBackend as FineTuneBackend
    from .outbound import AddressPolicy as AddressPolicy
    from .rollout.service import RolloutService as RolloutService
    from .rollout.types import RolloutSettings as RolloutSettings
    from .settings import Backend as Backend
    from .settings import Limits as Limits
    from .settings import RateLimits as RateLimits
    from .settings import ServerSettings as ServerSettings
    from .store.db import DEFAULT_DATABASE_URL as DEFAULT_DATABASE_URL
    from .store.db import Database as Database
    from .store.keys import create_key as create_key

_EXPORTS = {
    "AddressPolicy": ".outbound",
    "Backend": ".settings",
    "DEFAULT_DATABASE_URL": ".store.db",
    "Database": ".store.db",
    "FineTuneBackend": ".finetune.backend",
    "Limits": ".settings",
    "PortInUse": "._serve",
    "RateLimits": ".settings",
    "RolloutService": ".rollout.service",
    "RolloutSettings": ".rollout.types",
    "RunningServer": "._serve",
    "ServerSettings": ".settings",
    "bind": "._serve",
    "create_app": ".app",
    "create_key": ".store.keys",
    "run": "._serve",
    "serve_in_thread": "._serve",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module, __name__), name)
