"""Which fine-tuning backend a launch uses, with which key, under which address policy.

The one rule: a key is only ever sent to the URL it belongs to.  A project picks
a backend the operator configured by name (its URL and key come from the
server's settings), or brings its own URL *and* its own key, and that URL is
held to the outbound address policy at every connection.  There is no path on
which a project's URL gets the operator's key.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from logos_shift.server.outbound import AddressPolicy, check_url, redact_url
from logos_shift.server.settings import ServerSettings

from .backend import OpenAICompatibleBackend

__all__ = ["BackendRefused", "BackendTarget", "resolve_backend"]


class BackendRefused(ValueError):
    """A launch asks for a backend it may not use (answered 422 ``invalid_backend``)."""


@dataclass(frozen=True)
class BackendTarget:
    """The backend a launch runs on.

    Attributes:
        name: the configured backend's name, or ``"project"`` for a project's own URL.
        base_url: the API root.
        api_key: the key sent to ``base_url`` (never stored, never shown).
        configured: whether the operator configured it (trusted: no address policy,
            its job texts are kept).
        policy: the address policy every connection must pass (project URLs only).
    """

    name: str
    base_url: str
    api_key: str = field(repr=False)
    configured: bool
    policy: AddressPolicy | None = None

    @property
    def label(self) -> str:
        """How messages name it: ``backend 'openai'`` or the project URL without credentials."""
        if self.configured:
            return f"backend {self.name!r}"
        return f"the project's backend {redact_url(self.base_url)}"

    def build(self, timeout_s: float = 60.0, max_retries: int = 2) -> OpenAICompatibleBackend:
        """Create the OpenAI-compatible client for this target.

        Args:
            timeout_s: seconds per HTTP request.
            max_retries: the SDK's retries per request.

        Returns:
            The backend (close it when done).
        """
        return OpenAICompatibleBackend(
            self.base_url,
            self.api_key,
            timeout_s,
            max_retries,
            name=self.label,
            policy=self.policy,
            trusted=self.configured,
        )


def resolve_backend(
    settings: ServerSettings, name: str | None, url: str | None, key: str | None
) -> BackendTarget:
    """Decide the backend of a launch from what the project asked for.

    Args:
        settings: the server's settings (configured backends, outbound policy).
        name: a configured backend's name (None: the default one), or None with ``url``.
        url: the project's own backend URL.
        key: the project's own key for ``url``.

    Returns:
        The target.

    Raises:
        BackendRefused: an unknown name, no backend configured, a key without a URL,
            a URL without a key, or project URLs turned off.
        OutboundRefused: the project URL fails the address policy.
    """
    if url is not None:
        if name is not None:
            raise BackendRefused(
                "give backend (a configured backend's name) or backend_url, not both"
            )
        if not settings.allow_project_backends:
            raise BackendRefused(
                "this server does not accept project backend URLs; use one of its backends: "
                + _names(settings)
            )
        if not key:
            raise BackendRefused(
                "backend_url needs backend_api_key: the server's own keys are only ever sent "
                "to the backends its operator configured"
            )
        check_url(url, settings.outbound, what="backend_url")
        return BackendTarget("project", url, key, configured=False, policy=settings.outbound)
    if key is not None:
        raise BackendRefused(
            "backend_api_key goes with backend_url (a configured backend has its own)"
        )
    backend = settings.backend_for(name)
    if backend is None:
        if name is not None:
            raise BackendRefused(f"no backend named {name!r}; this server has: {_names(settings)}")
        raise BackendRefused(
            "no fine-tuning backend is configured on this server (its operator sets them in "
            "the server config or $LOGOS_SHIFT_BACKEND_<NAME>_URL/_KEY); or send backend_url "
            "with your own backend_api_key"
        )
    return BackendTarget(backend.name, backend.base_url, backend.api_key, configured=True)


def _names(settings: ServerSettings) -> str:
    return ", ".join(sorted(settings.backends)) or "none"
