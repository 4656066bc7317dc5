"""A cache shared by every corral instance, in Redis.

Each entry is one Redis string under ``prefix + key`` with Redis's own expiry (``PX``), so a
lookup is one ``GET`` round trip and nothing needs sweeping. The prefix is the deployment's
namespace (``{redis_prefix}cache:``): ``clear`` and ``stats`` only ever touch keys under it.

``stats`` walks the namespace with ``SCAN`` (never ``KEYS``, which blocks Redis): it is meant
for the admin API and an occasional metrics refresh, not for every request. ``hits``,
``misses`` and ``stores`` are this instance's own counts.

Redis errors become :class:`~corral.cache.store.CacheUnavailable`, here and nowhere else.

Example::

    cache = RedisCache.from_url("redis://127.0.0.1:6379/0", prefix="corral:cache:")
    await cache.set("k", b"answer", ttl=60)
    await cache.get("k")        # b"answer"
    await cache.aclose()
"""

from __future__ import annotations

from redis.asyncio import Redis
from redis.exceptions import RedisError

from corral.cache.store import CacheStats, CacheUnavailable

# Short: a slow or absent Redis must cost a request little more than a miss.
DEFAULT_TIMEOUT = 1.0
_SCAN_BATCH = 500


class RedisCache:
    """Implements ``Cache`` on a ``redis.asyncio`` client it owns.

    ``RedisCache.from_url("redis://127.0.0.1:6379/0", prefix="corral:cache:")``
    """

    def __init__(self, client: Redis, prefix: str) -> None:
        if not prefix:
            raise ValueError("a Redis cache needs a key prefix (its namespace)")
        self._client = client
        self.prefix = prefix
        self._pattern = _escape_glob(prefix) + "*"
        self._hits = self._misses = self._stores = 0

    @classmethod
    def from_url(cls, url: str, *, prefix: str, timeout: float = DEFAULT_TIMEOUT) -> RedisCache:
        client = Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        return cls(client, prefix)

    async def get(self, key: str) -> bytes | None:
        try:
            value = await self._client.get(self.prefix + key)
        except RedisError as err:
            raise CacheUnavailable(f"redis: {err}") from err
        if value is None:
            self._misses += 1
            return None
        self._hits += 1
        # The client is made without decode_responses: values come back as bytes.
        return value if isinstance(value, bytes) else value.encode()

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        milliseconds = int(ttl * 1000)
        if milliseconds <= 0:
            return
        try:
            await self._client.set(self.prefix + key, value, px=milliseconds)
        except RedisError as err:
            raise CacheUnavailable(f"redis: {err}") from err
        self._stores += 1

    async def delete(self, key: str) -> bool:
        try:
            return bool(await self._client.delete(self.prefix + key))
        except RedisError as err:
            raise CacheUnavailable(f"redis: {err}") from err

    async def clear(self) -> int:
        removed = 0
        try:
            batch: list[bytes] = []
            async for name in self._client.scan_iter(match=self._pattern, count=_SCAN_BATCH):
                batch.append(name)
                if len(batch) >= _SCAN_BATCH:
                    removed += await self._client.unlink(*batch)
                    batch = []
            if batch:
                removed += await self._client.unlink(*batch)
        except RedisError as err:
            raise CacheUnavailable(f"redis: {err}") from err
        return removed

    async def stats(self) -> CacheStats:
        entries = size = 0
        try:
            batch: list[bytes] = []
            async for name in self._client.scan_iter(match=self._pattern, count=_SCAN_BATCH):
                batch.append(name)
                if len(batch) >= _SCAN_BATCH:
                    entries, size = await self._measure(batch, entries, size)
                    batch = []
            if batch:
                entries, size = await self._measure(batch, entries, size)
        except RedisError as err:
            raise CacheUnavailable(f"redis: {err}") from err
        return CacheStats(
            "redis",
            entries=entries,
            bytes=size,
            hits=self._hits,
            misses=self._misses,
            stores=self._stores,
        )

    async def _measure(self, names: list[bytes], entries: int, size: int) -> tuple[int, int]:
        pipe = self._client.pipeline(transaction=False)
        for name in names:
            pipe.strlen(name)
        lengths = await pipe.execute()
        for name, length in zip(names, lengths, strict=True):
            if length:  # 0: expired between SCAN and STRLEN
                entries += 1
                size += len(name) - len(self.prefix) + int(length)
        return entries, size

    async def ping(self) -> None:
        try:
            await self._client.ping()
        except RedisError as err:
            raise CacheUnavailable(f"redis: {err}") from err

    async def aclose(self) -> None:
        await self._client.aclose()


def _escape_glob(text: str) -> str:
    """A prefix taken literally in a ``SCAN MATCH`` pattern."""
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)
