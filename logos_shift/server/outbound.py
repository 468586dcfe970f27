"""Outbound requests: the address policy and the one HTTP client every outbound call uses.

The server calls out in two places: fine-tuning backends and webhooks.  Where a
project chooses the URL, a request could be pointed at the server's own network
(loopback, a database, a cloud metadata service).  So every such request goes
through :func:`http_client`, whose transport

* resolves the host itself and refuses the connection when *any* address it
  resolves to is not a public unicast address (loopback, private, shared/CGNAT,
  link-local, multicast, reserved, unspecified, IPv4 embedded in IPv6 forms of
  those), unless the operator's :class:`AddressPolicy` allows it;
* connects to the address it checked (the URL's host is rewritten to it; TLS
  still verifies the certificate for the original name and the ``Host`` header
  is unchanged), so a second DNS answer can never redirect the connection
  (no DNS rebinding);
* never follows redirects, ignores ``HTTP(S)_PROXY`` settings and caps the
  response size.

Cloud metadata addresses stay refused even when private addresses are allowed,
unless the operator lists them in ``allow_networks`` explicitly.
"""

from __future__ import annotations

import importlib
import ipaddress
import socket
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

__all__ = [
    "AddressPolicy",
    "OutboundRefused",
    "check_url",
    "http_client",
    "httpx_module",
    "redact_url",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Instance metadata services (AWS, GCP, Azure, OpenStack; AWS over IPv6; Alibaba).
METADATA_NETWORKS: tuple[IPNetwork, ...] = (
    ipaddress.ip_network("169.254.169.254/32"),
    ipaddress.ip_network("169.254.170.2/32"),
    ipaddress.ip_network("fd00:ec2::254/128"),
    ipaddress.ip_network("100.100.100.200/32"),
)
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))


class OutboundRefused(ValueError):
    """An outbound URL or the address it resolves to is not allowed (answered 422)."""


def _embedded_v4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    for net in _NAT64:
        if ip in net:
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


@dataclass(frozen=True)
class AddressPolicy:
    """Which addresses project-chosen URLs (webhooks, fine-tuning backends) may reach.

    Attributes:
        allow_private: also allow loopback, private, shared (CGNAT), link-local and
            other non-public unicast addresses (metadata services stay refused).
        allow_networks: CIDR networks allowed even when not public, e.g.
            ``("10.20.0.0/16",)``; a metadata address is allowed only when listed here.
        allowed_schemes: URL schemes accepted.
    """

    allow_private: bool = False
    allow_networks: tuple[str, ...] = ()
    allowed_schemes: tuple[str, ...] = ("https", "http")

    def __post_init__(self) -> None:
        nets = []
        for cidr in self.allow_networks:
            try:
                nets.append(ipaddress.ip_network(cidr, strict=False))
            except ValueError:
                raise ValueError(f"allow_networks: {cidr!r} is not a CIDR network") from None
        object.__setattr__(self, "_networks", tuple(nets))

    def refusal(self, ip: IPAddress) -> str | None:
        """Return why ``ip`` may not be reached, or None when it may.

        Args:
            ip: a resolved address.

        Returns:
            A short reason (``"loopback"``, ``"private"``, …) or None.
        """
        networks: tuple[IPNetwork, ...] = getattr(self, "_networks", ())
        if any(ip in net for net in networks):
            return None
        inner = _embedded_v4(ip)
        if inner is not None and any(inner in net for net in networks):
            return None
        for candidate in (ip, inner):
            if candidate is None:
                continue
            if any(candidate in net for net in METADATA_NETWORKS):
                return "cloud metadata"
            if candidate.is_multicast:
                return "multicast"
            if candidate.is_unspecified:
                return "unspecified"
            if self.allow_private:
                continue
            if candidate.is_loopback:
                return "loopback"
            if candidate.is_link_local:
                return "link-local"
            if not candidate.is_global or candidate.is_reserved:
                return "private or reserved"
        return None

    def resolve(self, host: str, port: int) -> str:
        """Resolve ``host`` and return the address to connect to.

        Every address the name resolves to must be allowed (a name that also
        resolves to an internal address is refused), and the first one is used.
        For a name, the message is the same whether it does not resolve or resolves
        to a refused address, so answers are no oracle for internal DNS names.

        Args:
            host: a name or an address literal.
            port: the TCP port.

        Returns:
            The checked address (text form, no brackets).

        Raises:
            OutboundRefused: the name does not resolve, or resolves to a refused address.
        """
        try:
            literal: IPAddress | None = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            literal = None
        if literal is not None:
            why = self.refusal(literal)
            if why is not None:
                raise OutboundRefused(f"{literal} is {_article(why)} address; {_POLICY}")
        hidden = OutboundRefused(f"host {host!r} does not resolve to a public address; {_POLICY}")
        try:
            infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
        except (OSError, UnicodeError):
            raise hidden from None
        addresses: list[IPAddress] = []
        for info in infos:
            try:
                addresses.append(ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]))
            except ValueError:
                continue
        if not addresses or any(self.refusal(ip) is not None for ip in addresses):
            raise hidden
        return str(addresses[0])


_POLICY = "the server only calls public addresses unless its operator allows the network"


def _article(text: str) -> str:
    return ("an " if text[0] in "aeiou" else "a ") + text


def redact_url(url: str) -> str:
    """Return ``url`` without credentials, query or fragment (safe to log or show).

    Args:
        url: any URL.

    Returns:
        ``scheme://host[:port]/path``.
    """
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<invalid URL>"
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{port}" if port is not None else host
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def check_url(
    url: str,
    policy: AddressPolicy,
    *,
    what: str,
    allow_userinfo: bool = False,
    allow_query: bool = False,
) -> str:
    """Check a project-supplied URL against the policy (and resolve its host once).

    The check is repeated at every connection (the address is pinned there);
    doing it here too gives the caller a clear 422 instead of a later failure.

    Args:
        url: the URL.
        policy: the address policy.
        what: what the URL is for (used in messages), e.g. ``"webhook_url"``.
        allow_userinfo: accept ``user:password@`` in the URL.
        allow_query: accept a query string.

    Returns:
        The URL unchanged.

    Raises:
        OutboundRefused: a bad scheme, host, query, credentials, or a refused address.
    """
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError:
        raise OutboundRefused(f"{what} is not a valid URL") from None
    if parts.scheme not in policy.allowed_schemes:
        allowed = " or ".join(policy.allowed_schemes)
        raise OutboundRefused(f"{what} must use {allowed}")
    host = parts.hostname
    if not host:
        raise OutboundRefused(f"{what} has no host")
    if (parts.username is not None or parts.password is not None) and not allow_userinfo:
        raise OutboundRefused(f"{what} must not contain credentials")
    if (parts.query or "?" in url) and not allow_query:
        raise OutboundRefused(f"{what} must not contain a query string")
    if parts.fragment or "#" in url:
        raise OutboundRefused(f"{what} must not contain a fragment")
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in url):
        raise OutboundRefused(f"{what} must not contain spaces or control characters")
    policy.resolve(host, port or (443 if parts.scheme == "https" else 80))
    return url


def httpx_module() -> ModuleType:
    """Return the httpx flavour the installed openai SDK uses (``httpx2`` or ``httpx``).

    Returns:
        The module.
    """
    import openai

    base = next(c for c in openai.DefaultHttpxClient.__mro__[1:] if c.__name__ == "Client")
    return importlib.import_module(base.__module__.partition(".")[0])


class ResponseTooLarge(OSError):
    """An outbound response went over the size limit."""


def _capped(httpx: ModuleType, inner: Any, limit: int) -> Any:
    class CappedStream(httpx.SyncByteStream):  # type: ignore[misc, name-defined]
        def __iter__(self) -> Iterator[bytes]:
            seen = 0
            for chunk in inner:
                seen += len(chunk)
                if seen > limit:
                    raise ResponseTooLarge(f"response is larger than {limit} bytes")
                yield chunk

        def close(self) -> None:
            close = getattr(inner, "close", None)
            if callable(close):
                close()

    return CappedStream()


class _PinnedTransport:
    """An httpx(2) transport that checks and pins the address of every connection."""

    def __init__(self, httpx: ModuleType, policy: AddressPolicy | None, max_bytes: int) -> None:
        self._httpx = httpx
        self._policy = policy
        self._max_bytes = max_bytes
        # trust_env=False: an HTTP(S)_PROXY would connect somewhere we did not check.
        self._inner = httpx.HTTPTransport(trust_env=False, retries=0)

    def handle_request(self, request: Any) -> Any:
        url = request.url
        if self._policy is not None:
            host = url.host
            port = url.port or (443 if url.scheme == "https" else 80)
            try:
                ip = self._policy.resolve(host, port)
            except OutboundRefused as exc:
                err = self._httpx.ConnectError(str(exc), request=request)
                err.logos_refused = True  # read by the callers' error messages
                raise err from None
            try:
                literal = ipaddress.ip_address(host)
            except ValueError:
                literal = None
            if literal is None:
                if url.scheme == "https":
                    # TLS verifies the certificate for the name, not the address.
                    request.extensions = {**request.extensions, "sni_hostname": host}
                request.url = url.copy_with(host=ip)
        response = self._inner.handle_request(request)
        return self._httpx.Response(
            status_code=response.status_code,
            headers=response.headers,
            stream=_capped(self._httpx, response.stream, self._max_bytes),
            extensions=response.extensions,
        )

    def close(self) -> None:
        self._inner.close()

    def __enter__(self) -> _PinnedTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def http_client(
    policy: AddressPolicy | None,
    timeout_s: float = 30.0,
    max_response_bytes: int = 16 * 1024 * 1024,
    openai_sdk: bool = False,
) -> Any:
    """Build the HTTP client for outbound requests.

    Args:
        policy: the address policy to enforce at every connection; None for a
            destination the operator configured (still no redirects or proxies).
        timeout_s: seconds per request (connect, read, write).
        max_response_bytes: the largest response body accepted.
        openai_sdk: build ``openai.DefaultHttpxClient`` (to pass as the SDK's
            ``http_client``) instead of a plain client.

    Returns:
        An ``httpx2.Client`` (or ``httpx.Client``, whichever the openai SDK uses).
    """
    httpx = httpx_module()
    transport = _PinnedTransport(httpx, policy, max_response_bytes)
    kwargs: dict[str, Any] = {
        "transport": transport,
        "follow_redirects": False,
        "trust_env": False,
        "timeout": httpx.Timeout(timeout_s),
    }
    if openai_sdk:
        import openai

        return openai.DefaultHttpxClient(**kwargs)
    return httpx.Client(**kwargs)
