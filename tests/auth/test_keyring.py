"""The key ring: verification reads memory only; the ring follows the store's revision."""

from __future__ import annotations

import asyncio

from corral.auth.authenticator import Authenticator
from corral.auth.keyring import KeyRing
from tests.auth.fakes import MemoryKeyStore


async def test_verifying_never_touches_the_store() -> None:
    store = MemoryKeyStore()
    _, issued = store.add("ci")
    ring = KeyRing(store, interval=60)
    await ring.load()
    store.calls.clear()
    auth = Authenticator(ring)
    for _ in range(100):
        auth.verify(issued.plaintext)
    assert store.calls == []


async def test_refresh_reloads_only_when_the_revision_moved() -> None:
    store = MemoryKeyStore()
    store.add("one")
    ring = KeyRing(store, interval=60)
    await ring.load()
    store.calls.clear()
    assert await ring.refresh() is False
    assert store.calls == ["revision"]
    store.add("two")
    assert await ring.refresh() is True
    assert store.calls == ["revision", "revision", "snapshot"]
    assert {e.principal.name for e in ring.entries.values()} == {"one", "two"}


async def test_a_deleted_key_disappears_from_the_ring() -> None:
    store = MemoryKeyStore()
    record, issued = store.add("one")
    ring = KeyRing(store, interval=60)
    await ring.load()
    del store.records[record.id]
    store.version += 1
    await ring.refresh()
    assert issued.digest not in ring.entries


async def test_a_notice_refreshes_without_waiting_for_the_interval() -> None:
    store = MemoryKeyStore()
    ring = KeyRing(store, interval=3600)  # the poll would never come within this test
    await ring.start()
    try:
        store.add("late")
        ring.notify()
        for _ in range(200):
            if ring.entries:
                break
            await asyncio.sleep(0.005)
        assert [e.principal.name for e in ring.entries.values()] == ["late"]
    finally:
        await ring.aclose()


async def test_a_failing_store_keeps_the_last_good_copy() -> None:
    class Broken(MemoryKeyStore):
        async def revision(self) -> int:
            raise OSError("connection refused")

    store = Broken()
    store.add("one")
    ring = KeyRing(store, interval=3600)
    await ring.start()
    try:
        ring.notify()
        for _ in range(20):
            await asyncio.sleep(0)
        assert len(ring) == 1
    finally:
        await ring.aclose()
