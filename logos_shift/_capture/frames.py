"""Keep the SDK's warnings pointing at the caller, not at our wrapper frames.

An SDK warns with a ``stacklevel`` counted from its own frame to the user's
(anthropic's deprecated-model warning uses ``stacklevel=3``).  A wrapper adds a
frame in between, so the warning would name ``logos_shift/_capture/call.py``.
The :mod:`warnings` machinery skips, when it counts ``stacklevel``, the frames
of code whose file name contains both ``importlib`` and ``_bootstrap`` (that is
how CPython hides its import system; Python 3.10 to 3.14 alike).  The wrapper
functions' code objects are given such a file name, so the count lands where
it does without the patch.  Their source lines are registered in
:mod:`linecache` under that name, so tracebacks still show them.
"""

from __future__ import annotations

import linecache
import types
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

#: Appended to the real file name; "importlib" and "_bootstrap" are what warnings skips.
_MARK = " (logos_shift wrapper frame: skipped by warnings like importlib._bootstrap)"


def _rename(code: types.CodeType, filename: str) -> types.CodeType:
    consts = tuple(
        _rename(c, filename) if isinstance(c, types.CodeType) else c for c in code.co_consts
    )
    return code.replace(co_filename=filename, co_consts=consts)


def hidden_from_warnings(fn: F) -> F:
    """Make ``fn`` and every function defined inside it invisible to warnings' ``stacklevel``.

    Args:
        fn: a plain Python function (a wrapper factory or a generator function).

    Returns:
        ``fn`` itself, its code replaced by the same code under the marked file name.
    """
    code = fn.__code__
    if _MARK in code.co_filename:
        return fn
    filename = code.co_filename + _MARK
    fn.__code__ = _rename(code, filename)
    if filename not in linecache.cache:
        lines = linecache.getlines(code.co_filename)
        if lines:
            # mtime None: checkcache() keeps the entry (it is not backed by that name's file).
            linecache.cache[filename] = (len("".join(lines)), None, lines, filename)
    return fn
