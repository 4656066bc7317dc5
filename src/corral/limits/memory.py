"""Limits counted in this process: the :class:`~corral.limits.rate.Limiter` for one instance.

Every operation runs without suspending, so each hit, and each batch of hits, is atomic on the
event loop. Counts live in one dict; finished windows are swept once a second, not on every hit.

Example::

    limiter = MemoryLimiter(clock=fake_clock)
    await limiter.hit("ip:10.0.0.1", Rate(10, 60.0))
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

from corral.limits.rate import Decision, Hit, Rate, Verdict

# Seconds between two sweeps of expired counts: memory stays bounded by the keys seen in about
# one window, and a sweep costs nothing per hit but one comparison.
SWEEP_EVERY = 1.0

# A check of a simple plan, flattened for :meth:`MemoryLimiter.take`: its bit (1 << position),
# key, limit, window, whether it counts concurrency, and whether it takes the reservation.
FixedPart = tuple[int, str, int, float, bool, bool]


def fixed_parts(parts: Sequence[tuple[str, Rate, bool]]) -> tuple[FixedPart, ...] | None:
    """``parts`` flattened for :meth:`MemoryLimiter.take`'s one pass, or ``None`` when they
    need the batch path: a smooth rate, or a key named twice."""
    if len({key for key, _, _ in parts}) != len(parts):
        return None
    if any(rate.kind == "smooth" for _, rate, _ in parts):
        return None
    return tuple(
        (1 << index, key, rate.limit, rate.window, rate.kind == "concurrent", tokens)
        for index, (key, rate, tokens) in enumerate(parts)
    )


class MemoryLimiter:
    """Implements ``Limiter`` in memory; ``clock`` returns seconds (tests pass a fake one)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        # key -> [value, expires_at]: the count (fixed, concurrent; a whole number, so that
        # what is left is one too) or the theoretical arrival time (smooth).
        self._state: dict[str, list[Any]] = {}  # [int | float, float]
        self._sweep_at = clock() + SWEEP_EVERY

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
        return float(entry[0])

    # The synchronous forms, for callers that know they hold a memory limiter.

    def hit_now(self, key: str, rate: Rate, cost: int = 1) -> Decision:
        now = self._clock()
        if now >= self._sweep_at:
            self._sweep(now)
        return self._hit(key, rate, cost, now)

    def _hit(self, key: str, rate: Rate, cost: int, now: float) -> Decision:
        if rate.kind == "smooth":
            return self._smooth(key, rate, cost, now)
        entry = self._state.get(key)
        if entry is None or entry[1] <= now:
            entry = self._state[key] = [0, now + rate.window]
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
        if now >= self._sweep_at:
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
        self,
        parts: Sequence[tuple[str, Rate, bool]],
        reserve: int,
        fixed: Sequence[FixedPart] | None = None,
    ) -> Sequence[Verdict]:
        """:meth:`hit_many_now` for the limits stage: each part is a key, its rate, and
        whether it takes ``reserve`` units (else one). ``fixed``, when every part has a key of
        its own and none is smooth, is the same parts flattened by :func:`fixed_parts`: one
        pass then takes them all, and a denial gives back what the pass took before it.

        The decisions are plain tuples in :class:`Decision`'s order: this is the hot path of
        every limited request, and a named tuple costs a second tuple and a call."""
        now = self._clock()
        if now >= self._sweep_at:
            self._sweep(now)
        if fixed is None:
            return self._hit_in_turn([(k, r, reserve if t else 1) for k, r, t in parts], now)
        state = self._state
        decisions: list[Verdict] = []
        fresh = 0  # bit i: part i started its count
        renewed: list[tuple[list[float], float]] | None = None  # concurrency, old expiry
        for bit, key, limit, window, concurrent, tokens in fixed:
            cost = reserve if tokens else 1
            entry = state.get(key)
            if entry is None or entry[1] <= now:
                if cost > limit:
                    self._untake(fixed, reserve, fresh, renewed, len(decisions))
                    decisions.append((False, limit, window, 1.0 if concurrent else window))
                    return decisions
                state[key] = [cost, now + window]
                fresh |= bit
                decisions.append((True, limit - cost, 0.0 if concurrent else window, 0.0))
                continue
            count = entry[0] + cost
            if count > limit:
                self._untake(fixed, reserve, fresh, renewed, len(decisions))
                reset_after = entry[1] - now
                retry = 1.0 if concurrent else reset_after
                decisions.append((False, max(0, limit - count + cost), reset_after, retry))
                return decisions
            entry[0] = count
            if concurrent:
                if renewed is None:
                    renewed = []
                renewed.append((entry, entry[1]))
                entry[1] = now + window
                decisions.append((True, limit - count, 0.0, 0.0))
            else:
                decisions.append((True, limit - count, entry[1] - now, 0.0))
        return decisions

    def _untake(
        self,
        fixed: Sequence[FixedPart],
        reserve: int,
        fresh: int,
        renewed: list[tuple[list[float], float]] | None,
        taken: int,
    ) -> None:
        """Give back what :meth:`take` took for the first ``taken`` parts before a denial: a
        count it started goes away, others lose the units, and a concurrency count gets its
        expiry back."""
        state = self._state
        for bit, key, _, _, _, tokens in fixed[:taken]:
            if fresh & bit:
                del state[key]
            else:
                state[key][0] -= reserve if tokens else 1
        for entry, expiry in renewed or ():
            entry[1] = expiry

    def settle(self, counts: Sequence[tuple[str, Rate]], units: int) -> None:
        """:meth:`refund_now` of ``units`` under each key of ``counts`` (fixed windows or
        concurrency, never smooth), for the limits stage's settlement. Giving back needs no
        clock: a count whose window ended counts as none, whatever it holds."""
        if units < 0:
            # Settled higher than reserved: the excess is taken, in a new window if need be.
            for key, rate in counts:
                self.refund_now(key, rate, units)
            return
        state = self._state
        for key, _ in counts:
            entry = state.get(key)
            if entry is not None:
                left = entry[0] - units
                entry[0] = left if left > 0 else 0

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
                self._state[key] = [-cost, now + rate.window]
            return
        entry[0] = max(0, entry[0] - cost)

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
        self._sweep_at = now + SWEEP_EVERY
        expired = [key for key, (_, expires) in self._state.items() if expires <= now]
        for key in expired:
            del self._state[key]
