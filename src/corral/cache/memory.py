"""An in-process cache: least recently used first out, bounded by the bytes it holds.

The bound is on bytes, not entries, because answers differ in size by orders of magnitude: a
short chat reply is a few hundred bytes, a batch of embeddings a few megabytes. The size of an
entry is its key plus its value; Python's own overhead per entry (a few hundred bytes) is not
counted. Each entry expires ``ttl`` seconds after it was stored, by an injectable clock.

Expired entries are dropped when they are looked up, or pushed out as the least recently used;
until then they count in ``entries`` and ``bytes``, which is what the process really holds.

Example::

    clock = FakeClock()                       # any () -> float
    cache = MemoryCache(1 << 20, clock=clock)
    cache.set_nowait("k", b"answer", ttl=60)
    cache.get_nowait("k")                     # b"answer"
    clock.advance(61)
    cache.get_nowait("k")                     # None
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from corral.cache.store import CacheStats


class MemoryCache:
    """LRU + TTL, bounded in bytes. Implements ``Cache`` and ``LocalCache``.

    >>> cache = MemoryCache(1024)
    >>> cache.set_nowait("k", b"answer", ttl=60); cache.get_nowait("k")
    b'answer'
    """

    def __init__(self, max_bytes: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        if max_bytes <= 0:
            raise ValueError("max_bytes must be > 0")
        self.max_bytes = max_bytes
        self._clock = clock
        # key -> (value, expires at); the first entry is the least recently used.
        self._entries: OrderedDict[str, tuple[bytes, float]] = OrderedDict()
        self._bytes = 0
        self._hits = self._misses = self._stores = self._evictions = 0

    # ---- LocalCache -----------------------------------------------------------------------

    def get_nowait(self, key: str) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            self._misses += 1
            return None
        value, expires_at = entry
        if expires_at <= self._clock():
            self._drop(key)
            self._misses += 1
            return None
        self._entries.move_to_end(key)
        self._hits += 1
        return value

    def set_nowait(self, key: str, value: bytes, ttl: float) -> None:
        """Store ``value``; one larger than the whole cache, or with no time to live, is not
        kept (and replaces nothing but an older value under the same key)."""
        self._drop(key)
        size = len(key) + len(value)
        if ttl <= 0 or size > self.max_bytes:
            return
        self._entries[key] = (value, self._clock() + ttl)
        self._bytes += size
        self._stores += 1
        while self._bytes > self.max_bytes:
            oldest = next(iter(self._entries))
            self._drop(oldest)
            self._evictions += 1

    def stats_nowait(self) -> CacheStats:
        return CacheStats(
            "memory",
            entries=len(self._entries),
            bytes=self._bytes,
            max_bytes=self.max_bytes,
            hits=self._hits,
            misses=self._misses,
            stores=self._stores,
            evictions=self._evictions,
        )

    def _drop(self, key: str) -> bool:
        entry = self._entries.pop(key, None)
        if entry is None:
            return False
        self._bytes -= len(key) + len(entry[0])
        return True

    # ---- Cache ----------------------------------------------------------------------------

    async def get(self, key: str) -> bytes | None:
        return self.get_nowait(key)

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        self.set_nowait(key, value, ttl)

    async def delete(self, key: str) -> bool:
        return self._drop(key)

    async def clear(self) -> int:
        count = len(self._entries)
        self._entries.clear()
        self._bytes = 0
        return count

    async def stats(self) -> CacheStats:
        return self.stats_nowait()

    async def aclose(self) -> None:
        await self.clear()
