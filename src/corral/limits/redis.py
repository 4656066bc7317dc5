"""Limits shared by every corral instance, in Redis: one Lua script for all the checks of a
request, so a request's admission is atomic and costs one round trip, whatever its limits.

Keys live under the deployment's prefix (``{redis_prefix}limits:``) with Redis's own expiry,
so nothing needs sweeping. Smooth rates use the Redis server's clock (``TIME``): instances
whose clocks differ still agree. Redis errors become
:class:`~corral.limits.rate.LimiterUnavailable`, here and nowhere else.

Example::

    limiter = RedisLimiter.from_url("redis://127.0.0.1:6379/0", prefix="corral:limits:")
    decision = await limiter.hit("key:7", Rate(60, 60.0))
    decisions = await limiter.hit_many([("key:7", Rate(60, 60.0), 1), ("key:7:t", tpm, 900)])
    await limiter.aclose()
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from redis.asyncio import Redis
from redis.exceptions import RedisError

from corral.limits.rate import Decision, Hit, LimiterUnavailable, Rate

# Short: a slow or absent Redis must cost a request little, whichever way failure goes.
DEFAULT_TIMEOUT = 0.5

# One check, as a Lua function: kind, limit, window (ms), cost, interval (us), capacity (units).
# Returns {allowed, remaining, reset_after_us, retry_after_us}. Numbers written back go through
# string.format: Lua's own number-to-string keeps 14 digits, fewer than a time in microseconds.
_HIT_ONE = """
local function hit(key, kind, limit, window, cost, interval, capacity)
  if kind == 'smooth' then
    capacity = capacity * interval
    local t = redis.call('TIME')
    local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
    local tat = tonumber(redis.call('GET', key) or '0')
    if tat < now then tat = now end
    local new_tat = tat + cost * interval
    local allowed_at = new_tat - capacity
    if allowed_at > now then
      return {0, math.floor((capacity - (tat - now)) / interval), tat - now, allowed_at - now}
    end
    redis.call('SET', key, string.format('%.0f', new_tat),
               'PX', math.ceil((new_tat - now) / 1000) + 1)
    return {1, math.floor((capacity - (new_tat - now)) / interval), new_tat - now, 0}
  end
  local ttl = redis.call('PTTL', key)
  local count = 0
  if ttl > 0 then count = tonumber(redis.call('GET', key) or '0') else ttl = window end
  if count + cost > limit then
    if kind == 'concurrent' then return {0, limit - count, 0, 1000000} end
    return {0, limit - count, ttl * 1000, ttl * 1000}
  end
  if kind == 'concurrent' then
    redis.call('SET', key, count + cost, 'PX', window)
    return {1, limit - count - cost, 0, 0}
  end
  redis.call('SET', key, count + cost, 'PX', ttl)
  return {1, limit - count - cost, ttl * 1000, 0}
end
"""

# Every check of a request, all or nothing: KEYS one per check, ARGV six per check (as above).
# Each check is taken in turn after saving its key's value and expiry; at the first denial the
# saved keys are put back, latest first, and the decisions so far are returned. Nothing else
# runs in between (a script is atomic), so no other client ever sees the undone counts.
_HIT_MANY = (
    _HIT_ONE
    + """
local n, out, saved = #KEYS, {}, {}
for i = 1, n do
  local key, a = KEYS[i], (i - 1) * 6
  if i < n then saved[i] = {redis.call('GET', key), redis.call('PTTL', key)} end
  local d = hit(key, ARGV[a + 1], tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3]),
                tonumber(ARGV[a + 4]), tonumber(ARGV[a + 5]), tonumber(ARGV[a + 6]))
  out[i] = d
  if d[1] == 0 then
    for j = i - 1, 1, -1 do
      local value, ttl = saved[j][1], saved[j][2]
      if not value then redis.call('DEL', KEYS[j])
      elseif ttl > 0 then redis.call('SET', KEYS[j], value, 'PX', ttl)
      else redis.call('SET', KEYS[j], value) end
    end
    return out
  end
end
return out
"""
)

# KEYS one per refund, ARGV four per refund: kind, window (ms), cost (negative: charge),
# interval (us).
_REFUND_MANY = """
local function refund(key, kind, window, cost, interval)
  if kind == 'smooth' then
    local tat = tonumber(redis.call('GET', key) or '0')
    if tat == 0 then return end
    local t = redis.call('TIME')
    local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
    local new_tat = tat - cost * interval
    if new_tat <= now then redis.call('DEL', key) return end
    redis.call('SET', key, string.format('%.0f', new_tat),
               'PX', math.ceil((new_tat - now) / 1000) + 1)
    return
  end
  local ttl = redis.call('PTTL', key)
  if ttl > 0 then
    local count = redis.call('DECRBY', key, cost)
    if count <= 0 then
      if kind == 'concurrent' then redis.call('DEL', key)
      else redis.call('SET', key, 0, 'PX', ttl) end
    end
  elseif cost < 0 then
    redis.call('SET', key, -cost, 'PX', window)
  end
end
for i = 1, #KEYS do
  local a = (i - 1) * 4
  refund(KEYS[i], ARGV[a + 1], tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4]))
end
return 0
"""


def _interval_us(rate: Rate) -> int:
    return max(1, round(rate.interval * 1e6))


def _window_ms(rate: Rate) -> int:
    return math.ceil(rate.window * 1000)


class RedisLimiter:
    """Implements ``Limiter`` on a ``redis.asyncio`` client it owns.

    ``RedisLimiter.from_url("redis://127.0.0.1:6379/0", prefix="corral:limits:")``
    """

    def __init__(self, client: Redis, prefix: str) -> None:
        if not prefix:
            raise ValueError("a Redis limiter needs a key prefix (its namespace)")
        self._client = client
        self.prefix = prefix
        self._hit_many = client.register_script(_HIT_MANY)
        self._refund_many = client.register_script(_REFUND_MANY)

    @classmethod
    def from_url(cls, url: str, *, prefix: str, timeout: float = DEFAULT_TIMEOUT) -> RedisLimiter:
        client = Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        return cls(client, prefix)

    async def hit(self, key: str, rate: Rate, cost: int = 1) -> Decision:
        return (await self.hit_many([(key, rate, cost)]))[0]

    async def hit_many(self, hits: Sequence[Hit]) -> list[Decision]:
        if not hits:
            return []
        keys: list[str] = []
        args: list[str | int] = []
        for key, rate, cost in hits:
            keys.append(self.prefix + key)
            args += (rate.kind, rate.limit, _window_ms(rate), cost, _interval_us(rate),
                     rate.capacity)  # fmt: skip
        try:
            answers = await self._hit_many(keys=keys, args=args)
        except (RedisError, OSError) as err:
            raise LimiterUnavailable(f"redis: {err}") from err
        return [
            Decision(bool(allowed), max(0, int(remaining)), reset_us / 1e6, retry_us / 1e6)
            for allowed, remaining, reset_us, retry_us in answers
        ]

    async def refund(self, key: str, rate: Rate, cost: int) -> None:
        await self.refund_many([(key, rate, cost)])

    async def refund_many(self, refunds: Sequence[Hit]) -> None:
        if not refunds:
            return
        keys: list[str] = []
        args: list[str | int] = []
        for key, rate, cost in refunds:
            keys.append(self.prefix + key)
            args += (rate.kind, _window_ms(rate), cost, _interval_us(rate))
        try:
            await self._refund_many(keys=keys, args=args)
        except (RedisError, OSError) as err:
            raise LimiterUnavailable(f"redis: {err}") from err

    async def usage(self, key: str) -> float:
        """The current count under ``key`` (0 when none); for reports, not decisions."""
        return (await self.usage_many([key]))[0]

    async def usage_many(self, keys: Sequence[str]) -> list[float]:
        """The counts under ``keys``, in one ``MGET``; for reports, not decisions."""
        if not keys:
            return []
        try:
            values = await self._client.mget([self.prefix + key for key in keys])
        except (RedisError, OSError) as err:
            raise LimiterUnavailable(f"redis: {err}") from err
        return [float(value) if value is not None else 0.0 for value in values]

    async def aclose(self) -> None:
        await self._client.aclose()
