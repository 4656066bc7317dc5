"""Allow and deny lists of client addresses and CIDR ranges, IPv4 and IPv6. Deny wins.

An empty allow list allows every address that is not denied. An address that is not an IP
address at all is refused while any rule is set (fail closed).

>>> rules = IpFilter(allow=["10.0.0.0/8", "::1"], deny=["10.0.0.5"])
>>> rules.allows("10.1.2.3"), rules.allows("10.0.0.5"), rules.allows("192.0.2.1")
(True, False, False)
>>> rules.allows("::ffff:10.1.2.3")   # an IPv4 client seen on an IPv6 socket
True
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# Decisions remembered per address; cleared when full, so memory stays bounded whatever the
# number of distinct clients.
_CACHE_SIZE = 4096


def parse_networks(values: Sequence[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(value.strip(), strict=False) for value in values)


def parse_address(text: str) -> Address | None:
    """``text`` as an IP address (IPv4-mapped IPv6 as IPv4, zone dropped); None if it is not."""
    try:
        address = ipaddress.ip_address(text.strip().split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def in_networks(address: Address, networks: Sequence[Network]) -> bool:
    return any(address.version == net.version and address in net for net in networks)


class IpFilter:
    """Whether a client address may use corral at all."""

    def __init__(self, allow: Sequence[str] = (), deny: Sequence[str] = ()) -> None:
        self.allow = parse_networks(allow)
        self.deny = parse_networks(deny)
        self.active = bool(self.allow or self.deny)
        self._decisions: dict[str, bool] = {}

    def allows(self, client: str) -> bool:
        if not self.active:
            return True
        decision = self._decisions.get(client)
        if decision is None:
            decision = self._decide(client)
            if len(self._decisions) >= _CACHE_SIZE:
                self._decisions.clear()
            self._decisions[client] = decision
        return decision

    def _decide(self, client: str) -> bool:
        address = parse_address(client)
        if address is None or in_networks(address, self.deny):
            return False
        return not self.allow or in_networks(address, self.allow)
