"""Built-in SDK providers, one declarative module per SDK.

Each module (:mod:`.openai`, :mod:`.anthropic`) defines a ``PROVIDER``: the
methods to patch, the supported version range and how to read the SDK's
requests, responses and stream chunks.  The shared contract is in
:mod:`._contract`; the wrapping, stream and guard machinery that uses it lives
in :mod:`logos_shift._capture_call`, :mod:`logos_shift._streamwrap` and
:mod:`logos_shift._instrument`.  A provider module is imported only when its
SDK is patched.
"""

from __future__ import annotations

from ._contract import Provider, Target

__all__ = ["Provider", "Target"]
