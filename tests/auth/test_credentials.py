"""Where a key is found, and that it can be taken out without touching anything else."""

from __future__ import annotations

import pytest

from corral.auth.credentials import Credentials, from_query, strip_query
from corral.http.messages import Headers


def headers(*pairs: tuple[str, str]) -> Headers:
    return Headers([(n.encode("latin-1"), v.encode("latin-1")) for n, v in pairs])


@pytest.mark.parametrize(
    ("configured", "sent", "found"),
    [
        (None, [("Authorization", "Bearer k1")], "k1"),
        (None, [("authorization", "bearer   k1  ")], "k1"),
        (None, [("X-API-Key", "k2")], "k2"),
        (None, [("Authorization", "Basic dXNlcjpwdw=="), ("X-API-Key", "k2")], "k2"),
        (None, [("Authorization", "k-raw")], None),
        ("Authorization", [("Authorization", "k-raw")], "k-raw"),  # seed 001's bare key
        ("Authorization", [("Authorization", "Bearer k1")], "k1"),
        ("X-Corral-Key", [("x-corral-key", "k3")], "k3"),
        ("X-Corral-Key", [("X-API-Key", "k2"), ("X-Corral-Key", "k3")], "k2"),
        (None, [("X-Corral-Key", "k3")], None),
        (None, [], None),
    ],
)
def test_keys_are_found_in_headers(
    configured: str | None, sent: list[tuple[str, str]], found: str | None
) -> None:
    assert Credentials(configured).from_headers(headers(*sent)) == found


def test_the_configured_header_is_never_forwarded() -> None:
    assert Credentials("X-Corral-Key").header_names == {
        b"authorization",
        b"x-api-key",
        b"x-corral-key",
    }


@pytest.mark.parametrize(
    ("query", "key", "rest"),
    [
        ("apikey=k1", "k1", ""),
        ("a=1&apikey=k1&b=%20x", "k1", "a=1&b=%20x"),
        ("apikey=corral_a%2Bb", "corral_a+b", ""),
        ("api%6Bey=k1&x", "k1", "x"),
        ("apikey=k1&apikey=k2", "k1", ""),
        ("notapikey=k1", None, "notapikey=k1"),
        ("apikey=", "", ""),
    ],
)
def test_query_keys_are_found_and_removed(query: str, key: str | None, rest: str) -> None:
    assert from_query(query) == key
    assert strip_query(query) == rest
