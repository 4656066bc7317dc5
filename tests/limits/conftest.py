"""Both limiters behind one fixture, with a way to move their time forward without waiting.

The memory limiter reads a fake clock. Redis keeps its own time, so moving forward there
shifts what the limiter stored instead: expiries shorten, a smooth rate's arrival time moves
back. Redis (``TEST_REDIS_URL``) gets a unique prefix, cleaned after the test; where it is not
running its tests skip, except under ``CI=true``, where they fail.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from redis.asyncio import Redis

from corral.limits.memory import MemoryLimiter
from corral.limits.rate import Limiter
from corral.limits.redis import RedisLimiter
from tests.integration.conftest import sim, start_sim
from tests.stores.backing import REDIS_URL, redis_prefix, redis_space

__all__ = ["redis_space", "sim", "start_sim"]

# A stored value this large is a smooth rate's arrival time in microseconds, not a count.
_TIMESTAMP = 10**12


@dataclass
class FakeClock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Timed:
    """A limiter and how to move its time forward."""

    limiter: Limiter
    clock: FakeClock | None = None
    client: Redis | None = None
    prefix: str = ""

    async def advance(self, seconds: float) -> None:
        if self.clock is not None:
            self.clock.now += seconds
            return
        assert self.client is not None
        async for key in self.client.scan_iter(match=self.prefix + "*"):
            ttl = await self.client.pttl(key)
            left = ttl - seconds * 1000
            value = await self.client.get(key)
            if value is not None and int(float(value)) > _TIMESTAMP:
                shifted = int(float(value)) - int(seconds * 1e6)
                await self.client.set(key, str(shifted), px=max(1, int(left)))
            elif left <= 0:
                await self.client.delete(key)
            else:
                await self.client.pexpire(key, int(left))


@pytest.fixture(params=["memory", "redis"])
async def timed(request: pytest.FixtureRequest) -> AsyncIterator[Timed]:
    if request.param == "memory":
        clock = FakeClock()
        limiter = MemoryLimiter(clock=clock)
        yield Timed(limiter, clock=clock)
        await limiter.aclose()
        return
    async with redis_prefix() as (client, prefix):
        redis_limiter = RedisLimiter.from_url(REDIS_URL, prefix=prefix)
        try:
            yield Timed(redis_limiter, client=client, prefix=prefix)
        finally:
            await redis_limiter.aclose()
