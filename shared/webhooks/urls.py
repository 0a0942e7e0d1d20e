"""Where a webhook may go. Outbound calls are `https` to public addresses only;
`WEBHOOKS_ALLOW_INSECURE=true` (local development, tests) also allows `http` and
private, loopback or link-local addresses.

Two checks: `check_url` when a URL is given (its form: scheme, no user info, a port
that is a port, a host name that is one or a literal address that is allowed), and
`resolve_target` at every send: the host is resolved, every address it resolves to
must be allowed, and the address to connect to is returned. The sender connects to
that address (sending the host name as `Host` and in TLS's SNI) and never resolves the
name again, so a name that answers a public address to the check and a private one to
the connection (DNS rebinding) cannot reach the private one.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

MAX_URL_LENGTH = 2048
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
# A host name's resolver: (host, port) → the addresses (as text) it resolves to.
Resolver = Callable[[str, int], Iterable[str]]

_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
# A last label like these makes resolvers read the host as an IPv4 address in one of
# inet_aton's forms (2130706433, 0x7f.1, 017.0.0.1, 127.1): only the plain dotted
# quad is taken, the rest are refused as ambiguous.
_NUMERIC_LABEL = re.compile(r"(0x[0-9a-f]*|[0-9]+)")
# A host (a name, or an IPv6 address in brackets) and an optional port of digits.
_NETLOC = re.compile(r"(\[[0-9A-Fa-f:.%]+\]|[^:@\[\]/?#]+)(:[0-9]{1,5})?")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


class UrlRefused(ValueError):
    """A URL that webhooks may not go to; the message says why, to the caller."""


class ResolveFailed(OSError):
    """The host name did not resolve (now): a transient failure of a delivery."""


@dataclass(frozen=True)
class Target:
    """A checked URL: `url` normalised, its `host` as ASCII (IDNA), its `port`."""

    url: str
    scheme: str
    host: str
    port: int
    literal: Address | None  # when the host is an address, not a name


@dataclass(frozen=True)
class Resolved:
    """Where to connect for one send: `ip` (checked), on `port`; `host` goes in the
    Host header and the TLS server name."""

    target: Target
    ip: Address
    port: int

    @property
    def host(self) -> str:
        return self.target.host


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries to reach it (mapped, 6to4, Teredo, NAT64)."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def address_allowed(ip: Address, *, allow_insecure: bool) -> bool:
    """Public unicast only, unless insecure is allowed (then anything a connection can
    go to: never the unspecified address or a multicast group)."""
    if ip.is_unspecified or ip.is_multicast:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded is not None and not address_allowed(embedded,
                                                         allow_insecure=allow_insecure):
            return False
    if allow_insecure:
        return True
    public = ip.is_global and not (ip.is_private or ip.is_loopback or ip.is_link_local
                                   or ip.is_reserved)
    if isinstance(ip, ipaddress.IPv6Address):
        return public and not ip.is_site_local
    return public


def _ascii_host(raw: str) -> str:
    """The host name in ASCII, lower case, without a trailing dot (IDNA for others)."""
    try:
        host = raw.encode("idna").decode("ascii").lower()
    except UnicodeError as exc:
        raise UrlRefused("the URL's host is not a valid host name") from exc
    return host[:-1] if host.endswith(".") else host


def check_url(url: str, *, allow_insecure: bool) -> Target:
    """The URL checked and normalised, or UrlRefused saying what is wrong with it."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL_LENGTH:
        raise UrlRefused(f"a webhook URL has 1 to {MAX_URL_LENGTH} characters")
    if any(c.isspace() or not c.isprintable() or c == "\\" for c in url):
        raise UrlRefused("a webhook URL holds no spaces, control characters or backslashes")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UrlRefused("the URL is malformed (its host or port)") from exc
    scheme = parts.scheme.lower()
    allowed = ("https", "http") if allow_insecure else ("https",)
    if scheme not in allowed:
        raise UrlRefused("a webhook URL is https" if not allow_insecure
                         else "a webhook URL is https or http")
    if "@" in parts.netloc or parts.username is not None or parts.password is not None:
        raise UrlRefused("a webhook URL carries no user name or password")
    if parts.fragment or url.endswith("#"):
        raise UrlRefused("a webhook URL has no fragment")
    raw_host = parts.hostname or ""
    if not raw_host:
        raise UrlRefused("a webhook URL names a host")
    if port is not None and port < 1:
        raise UrlRefused("the URL's port is 1 to 65535")
    literal: Address | None = None
    if not _NETLOC.fullmatch(parts.netloc):
        raise UrlRefused("the URL is malformed (its host or port)")
    if parts.netloc.startswith("["):
        try:
            literal = ipaddress.IPv6Address(raw_host)
        except ValueError as exc:
            raise UrlRefused("the URL's host is not a valid IPv6 address") from exc
        if literal.scope_id:
            raise UrlRefused("the URL's IPv6 address has no zone")
        host = str(literal)
    else:
        host = _ascii_host(raw_host)
        labels = host.split(".")
        if not host or len(host) > 253 or not all(_LABEL.fullmatch(x) for x in labels):
            raise UrlRefused("the URL's host is not a valid host name")
        if _NUMERIC_LABEL.fullmatch(labels[-1]):
            try:
                literal = ipaddress.IPv4Address(host)
            except ValueError as exc:
                raise UrlRefused("the URL's host is an address in an ambiguous form: "
                                 "write it as four decimal numbers") from exc
        elif not allow_insecure and (host == "localhost" or host.endswith(".localhost")):
            raise UrlRefused("a webhook URL must go to a public address")
    if literal is not None and not address_allowed(literal, allow_insecure=allow_insecure):
        raise UrlRefused("a webhook URL must go to a public address")
    port = port or (443 if scheme == "https" else 80)
    shown_host = f"[{host}]" if isinstance(literal, ipaddress.IPv6Address) else host
    default_port = (scheme == "https" and port == 443) or (scheme == "http" and port == 80)
    netloc = shown_host if default_port else f"{shown_host}:{port}"
    normalised = urlunsplit((scheme, netloc, parts.path or "/", parts.query, ""))
    return Target(url=normalised, scheme=scheme, host=host, port=port, literal=literal)


def system_resolver(host: str, port: int) -> list[str]:
    """The host's addresses, as the system resolves them."""
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise ResolveFailed(f"{host} did not resolve: {exc}") from exc
    return [str(info[4][0]) for info in found]


def resolve_target(url: str | Target, *, allow_insecure: bool,
                   resolver: Resolver = system_resolver) -> Resolved:
    """Check the URL, resolve its host and check every address it has: the address to
    connect to (the first), or UrlRefused when any is not allowed (a name that answers
    a private address among public ones is refused: the answer may differ the next
    time), or ResolveFailed when it has none."""
    target = url if isinstance(url, Target) else check_url(url, allow_insecure=allow_insecure)
    if target.literal is not None:
        return Resolved(target, target.literal, target.port)
    addresses: list[Address] = []
    for raw in resolver(target.host, target.port):
        try:
            ip = ipaddress.ip_address(raw.split("%", 1)[0])
        except ValueError as exc:
            raise ResolveFailed(f"{target.host} resolved to a malformed address") from exc
        if not address_allowed(ip, allow_insecure=allow_insecure):
            raise UrlRefused(f"{target.host} resolves to an address that is not public")
        addresses.append(ip)
    if not addresses:
        raise ResolveFailed(f"{target.host} resolved to no address")
    return Resolved(target, addresses[0], target.port)
