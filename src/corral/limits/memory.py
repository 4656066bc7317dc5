"""Limits counted in this process: the :class:`~corral.limits.rate.Limiter` for one instance.

Every operation runs without suspending, so each hit, and each batch of hits, is atomic on the
event loop. Counts live in one dict; finished windows are swept now and then, not on every hit.

Example::

    limiter = MemoryLimiter(clock=fake_clock)
    await limiter.hit("ip:10.0.0.1", Rate(10, 60.0))
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

from corral.limits.rate import Decision, Hit, Rate

# Hits between two sweeps of expired counts: often enough to bound memory by the keys seen in
# about one window, rarely enough to cost nothing per hit.
_SWEEP_EVERY = 4096
_tuple_new = tuple.__new__


class MemoryLimiter:
    """Implements ``Limiter`` in memory; ``clock`` returns seconds (tests pass a fake one)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        # key -> [value, expires_at]: the count (fixed, concurrent) or the theoretical arrival
        # time (smooth).
        self._state: dict[str, list[float]] = {}
        self._hits = 0

    async def hit(self, key: str, rate: Rate, cost: int = 1) -> Decision:
        return self.hit_now(key, rate, cost)

    async def hit_many(self, hits: Sequence[Hit]) -> list[Decision]:
        return self.hit_many_now(hits)

    async def refund(self, key: str, rate: Rate, cost: int) -> None:
        self.refund_now(key, rate, cost)

    async def refund_many(self, refunds: Sequence[Hit]) -> None:
        for key, rate, cost in refunds:
            self.refund_now(key, rate, cost)

    async def aclose(self) -> None:
        self._state.clear()

    async def usage(self, key: str) -> float:
        return self.usage_now(key)

    async def usage_many(self, keys: Sequence[str]) -> list[float]:
        return [self.usage_now(key) for key in keys]

    def usage_now(self, key: str) -> float:
        """The current count under ``key`` (0 when none); for reports, not decisions."""
        entry = self._state.get(key)
        if entry is None or entry[1] <= self._clock():
            return 0.0
        return entry[0]

    # The synchronous forms, for callers that know they hold a memory limiter.

    def hit_now(self, key: str, rate: Rate, cost: int = 1) -> Decision:
        now = self._clock()
        self._hits += 1
        if self._hits % _SWEEP_EVERY == 0:
            self._sweep(now)
        return self._hit(key, rate, cost, now)

    def _hit(self, key: str, rate: Rate, cost: int, now: float) -> Decision:
        if rate.kind == "smooth":
            return self._smooth(key, rate, cost, now)
        entry = self._state.get(key)
        if entry is None or entry[1] <= now:
            entry = self._state[key] = [0.0, now + rate.window]
        count = entry[0]
        reset_after = entry[1] - now
        if count + cost > rate.limit:
            retry = 1.0 if rate.kind == "concurrent" else reset_after
            return Decision(False, max(0, int(rate.limit - count)), reset_after, retry)
        entry[0] = count + cost
        if rate.kind == "concurrent":
            entry[1] = now + rate.window
            reset_after = 0.0
        return Decision(True, int(rate.limit - count - cost), reset_after)

    def hit_many_now(self, hits: Sequence[Hit]) -> list[Decision]:
        """Every hit in turn; on the first denial, every count the batch changed is put back
        as it was, so the batch takes all or nothing (see ``Limiter.hit_many``)."""
        now = self._clock()
        self._hits += len(hits)
        if self._hits % _SWEEP_EVERY < len(hits):
            self._sweep(now)
        return self._hit_in_turn(hits, now)

    def _hit_in_turn(self, hits: Sequence[Hit], now: float) -> list[Decision]:
        decisions: list[Decision] = []
        saved: list[tuple[str, list[float] | None]] = []
        state = self._state
        for key, rate, cost in hits:
            entry = state.get(key)
            saved.append((key, entry if entry is None else entry.copy()))
            decision = self._hit(key, rate, cost, now)
            decisions.append(decision)
            if not decision.allowed:
                self._restore(saved)
                break
        return decisions

    def take(
        self, parts: Sequence[tuple[str, Rate, bool]], reserve: int, simple: bool
    ) -> list[Decision]:
        """:meth:`hit_many_now` for the limits stage, written out for its hot path: each part
        is a key, its rate, and whether it takes ``reserve`` units (else one). ``simple``:
        every part has a key of its own and none is smooth, so one pass takes them all and a
        denial gives back what the pass took before it."""
        now = self._clock()
        self._hits += len(parts)
        if self._hits % _SWEEP_EVERY < len(parts):
            self._sweep(now)
        if not simple:
            return self._hit_in_turn([(k, r, reserve if t else 1) for k, r, t in parts], now)
        state = self._state
        decisions: list[Decision] = []
        fresh: list[str] = []  # the counts this pass started
        renewed: list[tuple[list[float], float]] = []  # concurrency counts, their old expiry
        for key, rate, tokens in parts:
            cost = reserve if tokens else 1
            limit = rate.limit
            entry = state.get(key)
            if entry is None or entry[1] <= now:
                count = 0.0
                reset_after = rate.window
                if cost <= limit:
                    state[key] = [float(cost), now + reset_after]
                    fresh.append(key)
            else:
                count = entry[0]
                reset_after = entry[1] - now
                if count + cost <= limit:
                    entry[0] = count + cost
                    if rate.kind == "concurrent":
                        renewed.append((entry, entry[1]))
                        entry[1] = now + rate.window
            if count + cost > limit:
                retry = 1.0 if rate.kind == "concurrent" else reset_after
                decisions.append(Decision(False, max(0, int(limit - count)), reset_after, retry))
                self._untake(parts[: len(decisions) - 1], reserve, fresh, renewed)
                return decisions
            if rate.kind == "concurrent":
                reset_after = 0.0
            # Decision's own constructor is Python code; this makes the same tuple, faster.
            remaining = int(limit - count - cost)
            decisions.append(_tuple_new(Decision, (True, remaining, reset_after, 0.0)))
        return decisions

    def _untake(
        self,
        parts: Sequence[tuple[str, Rate, bool]],
        reserve: int,
        fresh: list[str],
        renewed: list[tuple[list[float], float]],
    ) -> None:
        """Give back what :meth:`take` took for ``parts`` before a denial: a count it started
        goes away, others lose the units, and a concurrency count gets its expiry back."""
        state = self._state
        for key, _, tokens in parts:
            if key in fresh:
                del state[key]
            else:
                state[key][0] -= reserve if tokens else 1
        for entry, expiry in renewed:
            entry[1] = expiry

    def _restore(self, saved: list[tuple[str, list[float] | None]]) -> None:
        """Put entries back as ``saved`` found them, latest first (a key saved twice ends as
        its first save had it)."""
        for key, entry in reversed(saved):
            if entry is None:
                self._state.pop(key, None)
            else:
                self._state[key] = entry

    def refund_now(self, key: str, rate: Rate, cost: int) -> None:
        now = self._clock()
        entry = self._state.get(key)
        if rate.kind == "smooth":
            if entry is not None:
                entry[0] = max(now, entry[0] - cost * rate.interval)
            return
        if entry is None or entry[1] <= now:
            if cost < 0:
                self._state[key] = [float(-cost), now + rate.window]
            return
        entry[0] = max(0.0, entry[0] - cost)

    def _smooth(self, key: str, rate: Rate, cost: int, now: float) -> Decision:
        interval = rate.interval
        capacity = rate.capacity * interval  # the most a bucket may run ahead of now
        entry = self._state.get(key)
        tat = max(entry[0], now) if entry is not None else now
        new_tat = tat + cost * interval
        allowed_at = new_tat - capacity
        if allowed_at > now + 1e-9:
            remaining = max(0, math.floor((capacity - (tat - now)) / interval + 1e-9))
            return Decision(False, remaining, tat - now, allowed_at - now)
        self._state[key] = [new_tat, new_tat]
        remaining = max(0, math.floor((capacity - (new_tat - now)) / interval + 1e-9))
        return Decision(True, remaining, new_tat - now)

    def _sweep(self, now: float) -> None:
        expired = [key for key, (_, expires) in self._state.items() if expires <= now]
        for key in expired:
            del self._state[key]
