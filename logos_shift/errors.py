"""The errors logos_shift raises into your code.

Almost nothing does: capture never raises (every internal step is guarded).
What does raise is a programming or configuration error, found when you
build an instance or load a config::

    LogosShiftError            base of everything logos_shift raises on purpose
     └── ConfigError           a setting or a routing config is invalid (also a ValueError)

Example:
    >>> import logos_shift
    >>> from logos_shift.routing import validate_config
    >>> try:
    ...     validate_config({"version": -1})
    ... except logos_shift.ConfigError as exc:
    ...     exc.errors
    ['version: must be >= 0, got -1']
"""

from __future__ import annotations

__all__ = ["ConfigError", "LogosShiftError"]


class LogosShiftError(Exception):
    """Base class of the errors logos_shift raises on purpose."""


class ConfigError(LogosShiftError, ValueError):
    """A setting or a routing config failed validation.

    A ``ValueError`` too, so ``except ValueError`` keeps working.

    Attributes:
        errors: one message per problem; for routing configs each is
            ``<json path>: <what is wrong>``.
    """

    def __init__(self, errors: list[str] | str) -> None:
        self.errors = [errors] if isinstance(errors, str) else list(errors)
        shown = "; ".join(self.errors[:10])
        more = f" (and {len(self.errors) - 10} more)" if len(self.errors) > 10 else ""
        super().__init__(f"invalid routing config: {shown}{more}")
