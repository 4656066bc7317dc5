"""The client's address: the TCP peer, unless the peer is a trusted proxy that says otherwise.

``X-Forwarded-For`` and ``Forwarded`` (RFC 7239; it wins when both are present) are read only
when the peer is in ``trusted_proxies``, and then from the right: each hop added by a trusted
proxy is believed, and the first address that is not a trusted proxy is the client. Anything a
client writes into these headers itself sits further left and is never reached, so an untrusted
client cannot choose its own address.

>>> from corral.http.messages import Headers
>>> resolver = ClientAddress(["10.0.0.0/8"])
>>> spoofed = Headers([(b"X-Forwarded-For", b"1.1.1.1, 203.0.113.7")])
>>> resolver.resolve("10.0.0.2", spoofed), resolver.resolve("198.51.100.4", spoofed)
('203.0.113.7', '198.51.100.4')
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from corral.auth.ipfilter import Address, in_networks, parse_address, parse_networks

if TYPE_CHECKING:
    from corral.http.messages import Headers

_CACHE_SIZE = 4096


def forwarded_for(value: str) -> list[str]:
    """The ``for=`` addresses of a ``Forwarded`` header, left to right (others as "")."""
    hops: list[str] = []
    for element in value.split(","):
        found = ""
        for pair in element.split(";"):
            name, _, raw = pair.strip().partition("=")
            if name.lower() == "for":
                found = raw.strip().strip('"')
        hops.append(found)
    return hops


def _hop_address(hop: str) -> Address | None:
    """``1.2.3.4``, ``1.2.3.4:5678``, ``[2001:db8::1]:80`` or ``2001:db8::1`` -> the address."""
    hop = hop.strip()
    if hop.startswith("["):
        return parse_address(hop[1 : hop.find("]")] if "]" in hop else "")
    if hop.count(":") == 1:
        hop = hop.partition(":")[0]
    return parse_address(hop)


class ClientAddress:
    """Resolves the client address of a request, given the trusted proxies."""

    def __init__(self, trusted_proxies: Sequence[str] = ()) -> None:
        self.trusted = parse_networks(trusted_proxies)
        self._known: dict[str, bool] = {}

    def is_trusted(self, address: str) -> bool:
        known = self._known.get(address)
        if known is None:
            parsed = parse_address(address)
            known = parsed is not None and in_networks(parsed, self.trusted)
            if len(self._known) >= _CACHE_SIZE:
                self._known.clear()
            self._known[address] = known
        return known

    def resolve(self, peer: str, headers: Headers) -> str:
        if not self.trusted or not self.is_trusted(peer):
            return peer
        forwarded = headers.get("forwarded")
        if forwarded is not None:
            hops = forwarded_for(forwarded)
        else:
            hops = (headers.get("x-forwarded-for") or "").split(",")
        client = peer
        for hop in reversed(hops):
            if not self.is_trusted(client):
                break
            address = _hop_address(hop)
            if address is None:
                break  # "unknown", an obfuscated name or garbage: the last trusted hop stands
            client = str(address)
        return client
