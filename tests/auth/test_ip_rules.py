"""IP allow/deny lists, and the client address behind trusted proxies."""

from __future__ import annotations

import pytest

from corral.auth.client_address import ClientAddress
from corral.auth.ipfilter import IpFilter
from corral.http.messages import Headers


@pytest.mark.parametrize(
    ("allow", "deny", "client", "allowed"),
    [
        ([], [], "203.0.113.9", True),
        (["10.0.0.0/8"], [], "10.255.0.1", True),
        (["10.0.0.0/8"], [], "11.0.0.1", False),
        (["10.0.0.0/8"], ["10.0.0.0/24"], "10.0.0.7", False),  # deny wins
        ([], ["203.0.113.0/24"], "203.0.113.200", False),
        ([], ["203.0.113.0/24"], "198.51.100.1", True),
        (["2001:db8::/32"], [], "2001:db8::1", True),
        (["2001:db8::/32"], [], "2001:db9::1", False),
        ([], ["2001:db8::1"], "2001:DB8:0::1", False),
        (["127.0.0.1"], [], "::ffff:127.0.0.1", True),  # IPv4 on an IPv6 socket
        (["10.0.0.0/8"], [], "10.0.0.1", True),
        (["fe80::/10"], [], "fe80::1%eth0", True),
        ([], ["10.0.0.0/8"], "not-an-address", False),  # fail closed
        (["10.0.0.0/8"], [], "", False),
        (["0.0.0.0/0"], [], "2001:db8::1", False),  # an IPv4 rule never matches IPv6
    ],
)
def test_allow_and_deny(allow: list[str], deny: list[str], client: str, allowed: bool) -> None:
    rules = IpFilter(allow, deny)
    assert rules.allows(client) is allowed
    assert rules.allows(client) is allowed  # the remembered decision is the same


def forwarded(*pairs: tuple[str, str]) -> Headers:
    return Headers([(n.encode(), v.encode()) for n, v in pairs])


@pytest.mark.parametrize(
    ("trusted", "peer", "sent", "client"),
    [
        # No trusted proxy: whatever the headers say, the peer is the client.
        ([], "198.51.100.4", [("X-Forwarded-For", "10.0.0.1")], "198.51.100.4"),
        ([], "198.51.100.4", [("Forwarded", "for=10.0.0.1")], "198.51.100.4"),
        # An untrusted peer cannot speak for anyone, even with a trusted range configured.
        (["10.0.0.0/8"], "198.51.100.4", [("X-Forwarded-For", "10.0.0.9")], "198.51.100.4"),
        # A trusted proxy names the client; what the client itself wrote further left is ignored.
        (["10.0.0.2"], "10.0.0.2", [("X-Forwarded-For", "203.0.113.7")], "203.0.113.7"),
        (["10.0.0.2"], "10.0.0.2", [("X-Forwarded-For", "127.0.0.1, 203.0.113.7")], "203.0.113.7"),
        # Two trusted proxies in a row.
        (["10.0.0.0/8"], "10.0.0.2", [("X-Forwarded-For", "1.1.1.1, 203.0.113.7, 10.0.0.3")], "203.0.113.7"),
        # Every hop trusted: the leftmost one stands.
        (["10.0.0.0/8"], "10.0.0.2", [("X-Forwarded-For", "10.0.0.5")], "10.0.0.5"),
        # Ports and brackets.
        (["10.0.0.2"], "10.0.0.2", [("X-Forwarded-For", "203.0.113.7:5123")], "203.0.113.7"),
        (["10.0.0.2"], "10.0.0.2", [("X-Forwarded-For", "[2001:db8::7]:443")], "2001:db8::7"),
        (["10.0.0.2"], "10.0.0.2", [("X-Forwarded-For", "2001:db8::7")], "2001:db8::7"),
        # RFC 7239 Forwarded wins over X-Forwarded-For.
        (
            ["10.0.0.2"],
            "10.0.0.2",
            [("Forwarded", 'for=192.0.2.60;proto=http, for="[2001:db8::1]:4711"'),
             ("X-Forwarded-For", "203.0.113.7")],
            "2001:db8::1",
        ),
        # Garbage or hidden hops: the last trusted hop is the best answer.
        (["10.0.0.2"], "10.0.0.2", [("X-Forwarded-For", "evil")], "10.0.0.2"),
        (["10.0.0.2"], "10.0.0.2", [("Forwarded", "for=unknown")], "10.0.0.2"),
        (["10.0.0.2"], "10.0.0.2", [], "10.0.0.2"),
    ],
)
def test_client_address(
    trusted: list[str], peer: str, sent: list[tuple[str, str]], client: str
) -> None:
    assert ClientAddress(trusted).resolve(peer, forwarded(*sent)) == client
