"""Limits shared by every corral instance, in Redis: one Lua script per check, so each hit is
atomic and costs one round trip whatever the kind of rate.

Keys live under the deployment's prefix (``{redis_prefix}limits:``) with Redis's own expiry,
so nothing needs sweeping. Smooth rates use the Redis server's clock (``TIME``): instances
whose clocks differ still agree. Redis errors become
:class:`~corral.limits.rate.LimiterUnavailable`, here and nowhere else.

Example::

    limiter = RedisLimiter.from_url("redis://127.0.0.1:6379/0", prefix="corral:limits:")
    decision = await limiter.hit("key:7", Rate(60, 60.0))
    await limiter.aclose()
"""

from __future__ import annotations

import math

from redis.asyncio import Redis
from redis.exceptions import RedisError

from corral.limits.rate import Decision, LimiterUnavailable, Rate

# Short: a slow or absent Redis must cost a request little, whichever way failure goes.
DEFAULT_TIMEOUT = 0.5

# ARGV: kind, limit, window (ms), cost, interval (us), capacity (units).
# Returns {allowed, remaining, reset_after_us, retry_after_us}. Numbers written back go through
# string.format: Lua's own number-to-string keeps 14 digits, fewer than a time in microseconds.
_HIT = """
local kind, limit, window = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local cost = tonumber(ARGV[4])
if kind == 'smooth' then
  local interval, capacity = tonumber(ARGV[5]), tonumber(ARGV[6]) * tonumber(ARGV[5])
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
  local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
  if tat < now then tat = now end
  local new_tat = tat + cost * interval
  local allowed_at = new_tat - capacity
  if allowed_at > now then
    return {0, math.floor((capacity - (tat - now)) / interval), tat - now, allowed_at - now}
  end
  redis.call('SET', KEYS[1], string.format('%.0f', new_tat),
             'PX', math.ceil((new_tat - now) / 1000) + 1)
  return {1, math.floor((capacity - (new_tat - now)) / interval), new_tat - now, 0}
end
local ttl = redis.call('PTTL', KEYS[1])
local count = 0
if ttl > 0 then count = tonumber(redis.call('GET', KEYS[1]) or '0') else ttl = window end
if count + cost > limit then
  if kind == 'concurrent' then return {0, limit - count, 0, 1000000} end
  return {0, limit - count, ttl * 1000, ttl * 1000}
end
if kind == 'concurrent' then
  redis.call('SET', KEYS[1], count + cost, 'PX', window)
  return {1, limit - count - cost, 0, 0}
end
redis.call('SET', KEYS[1], count + cost, 'PX', ttl)
return {1, limit - count - cost, ttl * 1000, 0}
"""

# ARGV: kind, window (ms), cost (negative: charge), interval (us).
_REFUND = """
local kind, window, cost = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
if kind == 'smooth' then
  local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
  if tat == 0 then return 0 end
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
  local new_tat = tat - cost * tonumber(ARGV[4])
  if new_tat <= now then redis.call('DEL', KEYS[1]) return 0 end
  redis.call('SET', KEYS[1], string.format('%.0f', new_tat),
             'PX', math.ceil((new_tat - now) / 1000) + 1)
  return 0
end
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then
  local count = redis.call('DECRBY', KEYS[1], cost)
  if count <= 0 then
    if kind == 'concurrent' then redis.call('DEL', KEYS[1])
    else redis.call('SET', KEYS[1], 0, 'PX', ttl) end
  end
elseif cost < 0 then
  redis.call('SET', KEYS[1], -cost, 'PX', window)
end
return 0
"""


class RedisLimiter:
    """Implements ``Limiter`` on a ``redis.asyncio`` client it owns.

    ``RedisLimiter.from_url("redis://127.0.0.1:6379/0", prefix="corral:limits:")``
    """

    def __init__(self, client: Redis, prefix: str) -> None:
        if not prefix:
            raise ValueError("a Redis limiter needs a key prefix (its namespace)")
        self._client = client
        self.prefix = prefix
        self._hit = client.register_script(_HIT)
        self._refund = client.register_script(_REFUND)

    @classmethod
    def from_url(cls, url: str, *, prefix: str, timeout: float = DEFAULT_TIMEOUT) -> RedisLimiter:
        client = Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        return cls(client, prefix)

    async def hit(self, key: str, rate: Rate, cost: int = 1) -> Decision:
        args = (
            rate.kind,
            rate.limit,
            math.ceil(rate.window * 1000),
            cost,
            max(1, round(rate.interval * 1e6)),
            rate.capacity,
        )
        try:
            allowed, remaining, reset_us, retry_us = await self._hit(
                keys=[self.prefix + key], args=args
            )
        except (RedisError, OSError) as err:
            raise LimiterUnavailable(f"redis: {err}") from err
        return Decision(bool(allowed), max(0, int(remaining)), reset_us / 1e6, retry_us / 1e6)

    async def refund(self, key: str, rate: Rate, cost: int) -> None:
        args = (rate.kind, math.ceil(rate.window * 1000), cost, max(1, round(rate.interval * 1e6)))
        try:
            await self._refund(keys=[self.prefix + key], args=args)
        except (RedisError, OSError) as err:
            raise LimiterUnavailable(f"redis: {err}") from err

    async def usage(self, key: str) -> float:
        """The current count under ``key`` (0 when none); for reports, not decisions."""
        try:
            value = await self._client.get(self.prefix + key)
        except (RedisError, OSError) as err:
            raise LimiterUnavailable(f"redis: {err}") from err
        return float(value) if value is not None else 0.0

    async def aclose(self) -> None:
        await self._client.aclose()
