"""The auth check stays cheap by construction: one SHA-256, one dict lookup, one compare, and
never the key store.

What would make it slow (a database call, a scan over the keys, a slow or repeated hash on the
hot path) is checked directly, by counting, rather than by timing it on a busy machine: the
benchmark measures speed.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import FrameType
from typing import Any

import pytest

import corral.auth.authenticator as authenticator_module
from corral.auth.access import AccessControl
from corral.auth.authenticator import Authenticator
from corral.auth.keyring import KeyRing
from corral.context import Call
from corral.http.messages import Headers, Request
from corral.http.routes import Endpoint, match
from corral.settings import Settings
from tests.auth.fakes import MemoryKeyStore

BODY = b'{"model":"llama3.2","messages":[{"role":"user","content":"Hi"}],"stream":false}'


def parse(endpoint: Endpoint, request: Request) -> Call:
    return Call("ollama", endpoint.name, "llama3.2", False, request.body, {})


async def admission(keys: int) -> tuple[AccessControl, Headers, MemoryKeyStore]:
    """Access control over ``keys`` keys plus one whose header is returned."""
    store = MemoryKeyStore()
    for n in range(keys):
        store.add(f"k{n}")
    _, issued = store.add("ci")
    ring = KeyRing(store, interval=60)
    await ring.load()
    access = AccessControl(Settings(), Authenticator(ring))
    headers = Headers([(b"Authorization", b"Bearer " + issued.plaintext.encode())])
    return access, headers, store


def admit(access: AccessControl, headers: Headers) -> None:
    request = Request("POST", "/api/chat", "", headers, BODY, ("127.0.0.1", 5000))
    access.admit(request, match("POST", "/api/chat"), parse)


def calls_made(action: Callable[[], None]) -> int:
    """How many functions (Python and C) ``action`` calls."""
    count = 0

    def profile(frame: FrameType, event: str, arg: Any) -> None:
        nonlocal count
        if event in ("call", "c_call"):
            count += 1

    sys.setprofile(profile)
    try:
        action()
    finally:
        sys.setprofile(None)
    return count


async def test_admitting_a_request_hashes_the_key_once_and_never_asks_the_store(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    access, headers, store = await admission(1000)
    store.calls.clear()
    hashed: list[bytes] = []
    real_sha256 = authenticator_module.sha256

    def counting_sha256(data: bytes) -> Any:
        hashed.append(data)
        return real_sha256(data)

    monkeypatch.setattr(authenticator_module, "sha256", counting_sha256)

    for _ in range(50):
        admit(access, headers)

    assert len(hashed) == 50
    assert store.calls == []


async def test_the_cost_of_admitting_does_not_grow_with_the_number_of_keys() -> None:
    few, few_headers, _ = await admission(10)
    many, many_headers, _ = await admission(5000)
    admit(few, few_headers)  # first calls fill caches (routes, interned strings)
    admit(many, many_headers)

    assert calls_made(lambda: admit(many, many_headers)) == calls_made(
        lambda: admit(few, few_headers)
    )
