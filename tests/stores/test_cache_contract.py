"""The Cache contract, run against the memory store and a real Redis.

Time passes by :meth:`Backing.age`: the memory store's injected clock moves on; in Redis every
key of the test's namespace has its remaining TTL shortened by as much (so nothing sleeps).
Redis runs at ``TEST_REDIS_URL`` (default 127.0.0.1:6379) under a prefix of its own; without it
the Redis half is skipped, or fails under ``CI=true``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from corral.cache.memory import MemoryCache
from corral.cache.redis_store import RedisCache
from corral.cache.store import Cache, CacheUnavailable
from tests.stores.backing import REDIS_URL, redis_prefix


class Backing:
    """A fresh store of one kind, and a way to make time pass for it."""

    def __init__(
        self,
        make: Callable[[str], Cache],
        age: Callable[[float], Awaitable[None]],
        closers: list[Cache],
    ) -> None:
        self._make = make
        self.age = age
        self._closers = closers

    def store(self, namespace: str = "a") -> Cache:
        store = self._make(namespace)
        self._closers.append(store)
        return store


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["memory", "redis"])
async def backing(request: pytest.FixtureRequest) -> AsyncIterator[Backing]:
    closers: list[Cache] = []
    if request.param == "memory":
        clock = FakeClock()

        async def advance(seconds: float) -> None:
            clock.now += seconds

        yield Backing(lambda _: MemoryCache(1 << 20, clock=clock), advance, closers)
    else:
        async with redis_prefix() as (client, prefix):

            async def shorten(seconds: float) -> None:
                async for name in client.scan_iter(match=prefix + "*"):
                    left = await client.pttl(name)
                    if left > 0:
                        if left - seconds * 1000 <= 0:
                            await client.delete(name)
                        else:
                            await client.pexpire(name, int(left - seconds * 1000))

            def make(namespace: str) -> Cache:
                return RedisCache.from_url(REDIS_URL, prefix=f"{prefix}{namespace}:")

            yield Backing(make, shorten, closers)
    for store in closers:
        await store.aclose()


async def test_a_missing_key_is_none(backing: Backing) -> None:
    assert await backing.store().get("nothing") is None


async def test_a_value_comes_back_byte_for_byte(backing: Backing) -> None:
    store = backing.store()
    value = bytes(range(256)) * 4 + b"\r\n\x00"
    await store.set("k", value, 60)
    assert await store.get("k") == value


async def test_a_large_value_is_kept_whole(backing: Backing) -> None:
    store = backing.store()
    value = b"x" * (512 * 1024)
    await store.set("big", value, 60)
    assert await store.get("big") == value


async def test_set_replaces(backing: Backing) -> None:
    store = backing.store()
    await store.set("k", b"one", 60)
    await store.set("k", b"two", 60)
    assert await store.get("k") == b"two"


async def test_a_value_expires_after_its_ttl_and_not_before(backing: Backing) -> None:
    store = backing.store()
    await store.set("short", b"1", 10)
    await store.set("long", b"2", 100)
    await backing.age(9)
    assert await store.get("short") == b"1"
    await backing.age(2)
    assert await store.get("short") is None
    assert await store.get("long") == b"2"


async def test_delete_says_whether_there_was_something(backing: Backing) -> None:
    store = backing.store()
    await store.set("k", b"v", 60)
    assert await store.delete("k") is True
    assert await store.delete("k") is False
    assert await store.get("k") is None


async def test_clear_empties_its_own_namespace_only(backing: Backing) -> None:
    mine, theirs = backing.store("mine"), backing.store("theirs")
    for i in range(3):
        await mine.set(f"k{i}", b"v", 60)
    await theirs.set("k0", b"kept", 60)
    assert await mine.clear() == 3
    assert await mine.get("k0") is None
    assert await theirs.get("k0") == b"kept"


async def test_stats_count_entries_bytes_and_traffic(backing: Backing) -> None:
    store = backing.store()
    await store.set("aa", b"x" * 10, 60)
    await store.set("bb", b"y" * 20, 60)
    await store.get("aa")
    await store.get("zz")
    stats = await store.stats()
    assert (stats.entries, stats.bytes) == (2, 34)  # keys and values
    assert (stats.hits, stats.misses, stats.stores) == (1, 1, 2)
    assert stats.as_dict()["backend"] in ("memory", "redis")


async def test_concurrent_use_is_consistent(backing: Backing) -> None:
    store = backing.store()
    await asyncio.gather(*(store.set(f"k{i}", str(i).encode(), 60) for i in range(50)))
    values = await asyncio.gather(*(store.get(f"k{i}") for i in range(50)))
    assert values == [str(i).encode() for i in range(50)]


async def test_an_unreachable_redis_is_reported_as_unavailable() -> None:
    closed = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = closed.sockets[0].getsockname()[1]
    closed.close()
    await closed.wait_closed()
    store = RedisCache.from_url(f"redis://127.0.0.1:{port}/0", prefix="nobody:", timeout=0.5)
    try:
        with pytest.raises(CacheUnavailable):
            await store.get("k")
        with pytest.raises(CacheUnavailable):
            await store.set("k", b"v", 60)
        with pytest.raises(CacheUnavailable):
            await store.stats()
    finally:
        await store.aclose()
