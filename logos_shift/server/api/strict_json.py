"""JSON request bodies as JSON defines them: no NaN, no Infinity, no numbers that overflow.

Python's ``json.loads`` (what Starlette's ``Request.json`` uses) accepts the
non-standard ``NaN``, ``Infinity`` and ``-Infinity`` and turns ``1e999`` into
infinity; such values then fail later, when an answer is serialised (a 500 on
every read of the stored value).  Every router of the API uses
:class:`StrictJSONRoute`, so they are refused where they arrive (422).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

__all__ = ["StrictJSONRoute", "loads"]


def _constant(name: str) -> Any:
    raise json.JSONDecodeError(f"{name} is not JSON", name, 0)


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise json.JSONDecodeError("number out of range", text, 0)
    return value


def loads(data: bytes | str) -> Any:
    """Decode JSON, refusing NaN, Infinity and numbers too large for a float.

    Args:
        data: the JSON text.

    Returns:
        The value.

    Raises:
        json.JSONDecodeError: invalid or non-standard JSON.
    """
    return json.loads(data, parse_constant=_constant, parse_float=_float)


class _StrictRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = loads(await self.body())
        return self._json


class StrictJSONRoute(APIRoute):
    """An ``APIRoute`` whose JSON bodies are decoded by :func:`loads`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """Wrap FastAPI's handler so it reads the body through the strict decoder.

        Returns:
            The request handler.
        """
        handler = super().get_route_handler()

        async def strict(request: Request) -> Response:
            return await handler(_StrictRequest(request.scope, request.receive))

        return strict
