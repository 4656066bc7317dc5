"""The ``Cache`` interface (DESIGN.md §5), its statistics, and the choice of store.

A store maps a text key to a byte value for ``ttl`` seconds. It knows nothing of requests or
answers: :mod:`corral.cache.key` makes the keys, :mod:`corral.cache.entry` the values. Two
implementations: :class:`~corral.cache.memory.MemoryCache` (one process, an LRU bounded in
bytes) and :class:`~corral.cache.redis_store.RedisCache` (shared by every instance).

A store that answers from its own memory also implements :class:`LocalCache`, whose ``*_nowait``
methods the request path calls without suspending.

Example::

    store = open_store(settings)          # Redis when redis_url is set, else memory
    await store.set("k", b"answer", ttl=60)
    await store.get("k")                  # b"answer"
    (await store.stats()).entries         # 1
    await store.aclose()
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from corral.settings import Settings


class CacheUnavailable(Exception):
    """The store could not be reached or failed; the request goes on as if it had missed."""


@dataclass(frozen=True, slots=True)
class CacheStats:
    """What a store holds and what happened to it since it started.

    ``hits`` and ``misses`` count ``get`` calls; ``evictions`` entries pushed out to make room
    (a Redis store leaves expiry to Redis and counts none).

    >>> CacheStats("memory", entries=2, bytes=120, max_bytes=1024).as_dict()["entries"]
    2
    """

    backend: str
    entries: int = 0
    bytes: int = 0
    max_bytes: int | None = None
    hits: int = 0
    misses: int = 0
    stores: int = 0
    evictions: int = 0

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


class Cache(Protocol):
    """Bytes by key, each with its own time to live."""

    async def get(self, key: str) -> bytes | None: ...

    async def set(self, key: str, value: bytes, ttl: float) -> None: ...

    async def delete(self, key: str) -> bool: ...

    async def clear(self) -> int: ...

    async def stats(self) -> CacheStats: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class LocalCache(Cache, Protocol):
    """A store in this process: the same operations, without suspending."""

    def get_nowait(self, key: str) -> bytes | None: ...

    def set_nowait(self, key: str, value: bytes, ttl: float) -> None: ...

    def stats_nowait(self) -> CacheStats: ...


def open_store(settings: Settings) -> Cache:
    """Redis under ``{redis_prefix}cache:`` when ``redis_url`` is set, else a memory LRU of
    ``cache_max_size`` bytes."""
    if settings.redis_url is not None:
        # Imported here: a corral without Redis does not load the client.
        from corral.cache.redis_store import RedisCache

        return RedisCache.from_url(settings.redis_url, prefix=settings.redis_prefix + "cache:")
    from corral.cache.memory import MemoryCache

    return MemoryCache(settings.cache_max_size)
