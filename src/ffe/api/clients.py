"""Who is at the other end of a connection: its address, and whether it came over TLS.

The peer of the socket is the client, unless the peer is one of ``api.trusted_proxies``: then
the client is the address that proxy put last into ``X-Forwarded-For`` (walking back over
further trusted proxies), and ``X-Forwarded-Proto`` says whether the client used https. From
any other peer those headers are ignored, as anyone can send them.

A header sent on several lines counts as one list, its lines joined in order: some proxies
(HAProxy's ``add-header``) add a line of their own instead of appending to the client's, and
the client's line must not win. So the proto believed is the last one given, the one our
proxy added.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from starlette.types import Scope

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class TrustedProxies:
    """The reverse proxies whose forwarding headers are believed."""

    def __init__(self, proxies: Iterable[str] = ()) -> None:
        self._networks: tuple[_Network, ...] = tuple(
            ipaddress.ip_network(p, strict=False) for p in proxies
        )

    def trusts(self, address: str) -> bool:
        """Whether ``address`` is one of the trusted proxies."""
        if not self._networks:
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self._networks)

    def client(self, scope: Scope) -> str:
        """The client's address ("unknown" when the server was not told the peer)."""
        peer = _peer(scope)
        if not self.trusts(peer):
            return peer
        hops = (hop.strip() for hop in reversed(_header(scope, b"x-forwarded-for").split(",")))
        for hop in hops:
            if hop and not self.trusts(hop):
                return hop
        return peer  # every hop was a proxy of ours (or none was given)

    def https(self, scope: Scope) -> bool:
        """Whether the client reached us over TLS (directly, or through a trusted proxy)."""
        if scope.get("scheme") in ("https", "wss"):
            return True
        if not self.trusts(_peer(scope)):
            return False
        said = _header(scope, b"x-forwarded-proto").split(",")[-1].strip().lower()
        return said == "https"


def _peer(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def _header(scope: Scope, name: bytes) -> str:
    """Every line of header ``name``, in order, joined as one comma-separated list."""
    lines = [value.decode("latin-1") for key, value in scope.get("headers", ()) if key == name]
    return ", ".join(str(line) for line in lines)
