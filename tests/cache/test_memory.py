"""The in-process store: LRU bounded in bytes, TTL by an injected clock."""

from __future__ import annotations

import pytest

from corral.cache.memory import MemoryCache


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def test_an_entry_expires_after_its_ttl(clock: FakeClock) -> None:
    cache = MemoryCache(1000, clock=clock)
    cache.set_nowait("k", b"v", ttl=10)
    clock.advance(9.9)
    assert cache.get_nowait("k") == b"v"
    clock.advance(0.1)
    assert cache.get_nowait("k") is None
    assert cache.stats_nowait().entries == 0  # dropped when found expired


def test_each_entry_has_its_own_ttl(clock: FakeClock) -> None:
    cache = MemoryCache(1000, clock=clock)
    cache.set_nowait("short", b"1", ttl=1)
    cache.set_nowait("long", b"2", ttl=100)
    clock.advance(50)
    assert cache.get_nowait("short") is None
    assert cache.get_nowait("long") == b"2"


def test_the_bound_is_in_bytes_and_the_least_recently_used_goes_first(clock: FakeClock) -> None:
    cache = MemoryCache(30, clock=clock)  # key + value bytes
    cache.set_nowait("a", b"x" * 9, ttl=60)  # 10 bytes
    cache.set_nowait("b", b"x" * 9, ttl=60)
    cache.set_nowait("c", b"x" * 9, ttl=60)
    assert cache.get_nowait("a") is not None  # "b" is now the least recently used
    cache.set_nowait("d", b"x" * 4, ttl=60)  # 5 more bytes: one entry must go
    assert cache.get_nowait("b") is None
    assert {k for k in "acd" if cache.get_nowait(k) is not None} == set("acd")
    stats = cache.stats_nowait()
    assert (stats.entries, stats.bytes, stats.evictions) == (3, 25, 1)


def test_one_large_entry_pushes_out_several_small_ones(clock: FakeClock) -> None:
    cache = MemoryCache(100, clock=clock)
    for name in "abcdefghij":
        cache.set_nowait(name, b"x" * 9, ttl=60)
    cache.set_nowait("big", b"x" * 57, ttl=60)  # 60 bytes
    stats = cache.stats_nowait()
    assert stats.bytes <= 100
    assert stats.evictions == 6
    assert cache.get_nowait("big") is not None


def test_a_value_larger_than_the_cache_is_not_kept(clock: FakeClock) -> None:
    cache = MemoryCache(50, clock=clock)
    cache.set_nowait("small", b"x", ttl=60)
    cache.set_nowait("huge", b"x" * 100, ttl=60)
    assert cache.get_nowait("huge") is None
    assert cache.get_nowait("small") == b"x"  # nothing was pushed out for it
    assert cache.stats_nowait().evictions == 0


def test_replacing_a_value_counts_its_bytes_once(clock: FakeClock) -> None:
    cache = MemoryCache(1000, clock=clock)
    cache.set_nowait("k", b"x" * 100, ttl=60)
    cache.set_nowait("k", b"x" * 10, ttl=60)
    assert cache.stats_nowait().bytes == 11
    assert cache.get_nowait("k") == b"x" * 10


def test_no_ttl_means_not_kept(clock: FakeClock) -> None:
    cache = MemoryCache(1000, clock=clock)
    cache.set_nowait("k", b"v", ttl=0)
    assert cache.get_nowait("k") is None


def test_counts_hits_misses_and_stores(clock: FakeClock) -> None:
    cache = MemoryCache(1000, clock=clock)
    cache.get_nowait("k")
    cache.set_nowait("k", b"v", ttl=60)
    cache.get_nowait("k")
    cache.get_nowait("k")
    stats = cache.stats_nowait()
    assert (stats.hits, stats.misses, stats.stores, stats.max_bytes) == (2, 1, 1, 1000)


async def test_async_interface_matches(clock: FakeClock) -> None:
    cache = MemoryCache(1000, clock=clock)
    await cache.set("k", b"v", 60)
    assert await cache.get("k") == b"v"
    assert await cache.delete("k") is True
    assert await cache.delete("k") is False
    await cache.set("a", b"1", 60)
    await cache.set("b", b"2", 60)
    assert await cache.clear() == 2
    assert (await cache.stats()).bytes == 0


def test_a_bound_must_be_positive() -> None:
    with pytest.raises(ValueError):
        MemoryCache(0)
