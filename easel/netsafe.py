"""Outbound requests to client-chosen URLs without SSRF: vet the resolved address, then connect to it.

Used by the queue agent (https inputs) and the webhooks Lambda (callbacks). The rules:

1. The host is resolved once with an injectable resolver; if ANY answer is loopback, private, link-local,
   multicast, reserved, unspecified or otherwise not globally routable (IPv4, IPv6, and IPv4 embedded in
   IPv6: mapped, compatible, 6to4, Teredo, NAT64) the URL is refused (a mixed answer is a rebinding trick).
2. The request goes to the vetted IP itself, with the name in the Host header and TLS SNI (so the
   certificate is still checked against the name): no second resolution an attacker's DNS could change.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

Resolver = Callable[[str, int], Sequence[str]]
"""``(host, port) -> IP address strings``; tests inject a stub that never touches the network."""

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses an IPv6 address carries (and that a host or a gateway may route to)."""
    found: list[ipaddress.IPv4Address] = []
    if ip.ipv4_mapped is not None:
        found.append(ip.ipv4_mapped)
    if ip.sixtofour is not None:
        found.append(ip.sixtofour)
    if ip.teredo is not None:
        found.extend(ip.teredo)
    packed = int(ip)
    if ip in _NAT64:
        found.append(ipaddress.IPv4Address(packed & 0xFFFFFFFF))
    # Deprecated IPv4-compatible form ::a.b.c.d (but not :: and ::1, which are checked as IPv6).
    if packed >> 32 == 0 and packed > 1:
        found.append(ipaddress.IPv4Address(packed))
    return found


def address_refusal(address: str | IPAddress) -> str | None:
    """Why connecting to ``address`` is refused, or None when it is a public unicast address."""
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    # Embedded IPv4 first: the precise reason ("loopback") beats the generic one for ::ffff:0:0/96.
    candidates: list[IPAddress] = []
    if isinstance(ip, ipaddress.IPv6Address):
        candidates.extend(_embedded_ipv4(ip))
    candidates.append(ip)
    for c in candidates:
        shown = f"{ip}" if c == ip else f"{ip} (embedding {c})"
        if c.is_unspecified:
            return f"{shown} is an unspecified address"
        if c.is_loopback:
            return f"{shown} is a loopback address"
        if c.is_link_local:
            return f"{shown} is a link-local address"
        if c.is_multicast:
            return f"{shown} is a multicast address"
        if c.is_reserved:
            return f"{shown} is a reserved address"
        if c.is_private:
            return f"{shown} is a private address"
        if not c.is_global:
            return f"{shown} is not a globally routable address"
    return None


@dataclass(frozen=True)
class PinnedTarget:
    """A vetted destination: the URL as given, the IP to connect to, and the names to present."""

    url: httpx.URL
    ip: str
    host: str
    host_header: str

    def build_request(self, client: httpx.Client, method: str, **kwargs: Any) -> httpx.Request:
        headers = {"Host": self.host_header, **kwargs.pop("headers", {})}
        extensions: dict[str, Any] = dict(kwargs.pop("extensions", {}))
        if self.url.scheme == "https":
            extensions["sni_hostname"] = self.host
        return client.build_request(
            method, self.url.copy_with(host=self.ip), headers=headers, extensions=extensions, **kwargs
        )


class Refused(ValueError):
    """The destination is not allowed; the message says why."""


class Unresolvable(OSError):
    """The host could not be resolved (may be transient)."""


def resolve_pinned(url: httpx.URL, resolver: Resolver, *, vet: bool = True) -> PinnedTarget:
    """Resolve ``url``'s host once and, when ``vet``, refuse unless every address is public."""
    scheme = url.scheme.lower()
    host = url.raw_host.decode("ascii").lower().rstrip(".")
    if not host:
        raise Refused("URL has no host")
    port = url.port or (443 if scheme == "https" else 80)
    try:
        literal: IPAddress | None = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        literal = None
    if literal is not None:
        addresses = [str(literal)]
    else:
        try:
            addresses = list(resolver(host, port))
        except OSError as exc:
            raise Unresolvable(f"cannot resolve '{host}': {exc}") from exc
        if not addresses:
            raise Unresolvable(f"'{host}' resolved to no address")
    if vet:
        for a in addresses:
            why = address_refusal(a)
            if why is not None:
                raise Refused(f"host '{host}' resolves to {why}")
    default_port = (scheme == "https" and port == 443) or (scheme == "http" and port == 80)
    raw = url.raw_host.decode("ascii")
    return PinnedTarget(
        url=url, ip=addresses[0], host=host, host_header=raw if default_port else f"{raw}:{port}"
    )
