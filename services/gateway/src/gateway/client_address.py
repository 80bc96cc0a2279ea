"""Who the client is, behind the ingress: the one place that reads forwarding headers.

A forwarding header is only as honest as whoever added it. The socket peer is the last hop;
if it is one of the configured proxies, the header it appended is believed, and so on
leftwards through ``X-Forwarded-For`` (or ``Forwarded: for=``) while the hop that added an
entry is itself a trusted proxy. The first untrusted address met from the right is the
client: anything left of it was written by the client and proves nothing. With no trusted
proxy configured (the default) the peer is the client and the headers are ignored.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping

from fastapi import Request

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_FORWARDED_FOR = re.compile(r'(?i)(?:^|[;,\s])for=("?)([^;,"]+)\1')


def trusted_networks(entries: Iterable[str]) -> tuple[Network, ...]:
    """Parses ``10.0.0.0/8``-style CIDRs and single addresses; raises on a typo."""
    return tuple(ipaddress.ip_network(entry.strip(), strict=False) for entry in entries
                 if entry.strip())


def _address(token: str) -> str | None:
    """A bare IP from an ``X-Forwarded-For`` entry or a ``Forwarded`` node, else None."""
    token = token.strip().strip('"')
    if token.startswith("["):  # Forwarded: for="[2001:db8::1]:4711"
        token = token[1:].split("]", 1)[0]
    elif token.count(":") == 1:  # 192.0.2.1:4711
        token = token.split(":", 1)[0]
    try:
        return str(ipaddress.ip_address(token))
    except ValueError:
        return None  # "unknown", an obfuscated node, garbage


def _is_trusted(address: str, networks: tuple[Network, ...]) -> bool:
    ip = ipaddress.ip_address(address)
    return any(ip in network for network in networks)


def forwarded_chain(headers: Mapping[str, str]) -> list[str | None]:
    """The forwarded-for hops, left to right; ``Forwarded`` wins over ``X-Forwarded-For``."""
    forwarded = headers.get("forwarded")
    if forwarded:
        return [_address(match.group(2)) for match in _FORWARDED_FOR.finditer(forwarded)]
    xff = headers.get("x-forwarded-for")
    if xff:
        return [_address(part) for part in xff.split(",")]
    return []


def resolve_client_address(peer: str | None, headers: Mapping[str, str],
                           trusted: tuple[Network, ...]) -> str:
    """The right-most address not belonging to a trusted proxy (the peer when untrusted)."""
    if peer is None:
        return "unknown"
    try:
        client = str(ipaddress.ip_address(peer))
    except ValueError:
        return peer  # a test transport or a Unix socket: nothing to resolve
    if not trusted or not _is_trusted(client, trusted):
        return client
    for hop in reversed(forwarded_chain(headers)):
        if hop is None:
            # A hop a trusted proxy could not name: stop at the proxy we know about.
            return client
        client = hop
        if not _is_trusted(hop, trusted):
            return hop
    return client  # every hop is a proxy: the left-most one is the best we know


def client_address(request: Request) -> str:
    """The request's client address, per the gateway's ``trusted_proxies`` setting."""
    networks: tuple[Network, ...] = request.app.state.trusted_proxies
    peer = request.client.host if request.client else None
    return resolve_client_address(peer, request.headers, networks)
