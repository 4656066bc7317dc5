"""The auth check stays a few microseconds: one SHA-256, one dict lookup, one compare.

A coarse bound, far above the measured cost, so it catches a regression (a database call or a
slow hash on the hot path) without failing on a busy machine.
"""

from __future__ import annotations

import time

from corral.auth.access import AccessControl
from corral.auth.authenticator import Authenticator
from corral.auth.keyring import KeyRing
from corral.http.messages import Headers, Request
from corral.http.routes import match
from corral.settings import Settings
from tests.auth.fakes import MemoryKeyStore

BODY = b'{"model":"llama3.2","messages":[{"role":"user","content":"Hi"}],"stream":false}'
BOUND_US = 200.0


async def test_admitting_a_request_costs_microseconds() -> None:
    store = MemoryKeyStore()
    for n in range(1000):
        store.add(f"k{n}")
    _, issued = store.add("ci")
    ring = KeyRing(store, interval=60)
    await ring.load()
    access = AccessControl(Settings(), Authenticator(ring))
    endpoint = match("POST", "/api/chat")
    headers = Headers([(b"Authorization", b"Bearer " + issued.plaintext.encode())])

    def parse(endpoint, request):  # type: ignore[no-untyped-def]
        from corral.context import Call

        return Call("ollama", endpoint.name, "llama3.2", False, request.body, {})

    rounds = 20_000
    started = time.perf_counter()
    for _ in range(rounds):
        request = Request("POST", "/api/chat", "", headers, BODY, ("127.0.0.1", 5000))
        access.admit(request, endpoint, parse)
    per_call = (time.perf_counter() - started) / rounds * 1e6
    assert per_call < BOUND_US, f"{per_call:.1f} µs per request"
