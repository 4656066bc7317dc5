"""The Limiter interface (DESIGN.md §5) and the values it takes and gives.

A :class:`Rate` says how much is allowed and how it is counted:

- ``fixed``: at most ``limit`` units in a window of ``window`` seconds that starts with the
  first hit (seed 001's and seed 003's request limits, token budgets per minute or per day);
- ``smooth``: ``limit`` units per ``window`` spread evenly, with up to ``burst`` at once (the
  generic cell rate algorithm, GCRA; seed 002's ``RATE_LIMIT_RPS``);
- ``concurrent``: at most ``limit`` units held at once; every hit is given back with
  :meth:`Limiter.refund` when its request ends. ``window`` is how long an idle count survives,
  so that units held by a process that died are not held forever.

A request usually meets several limits at once (a request limit, a token budget, a
concurrency slot): :meth:`Limiter.hit_many` takes them all or none, in one atomic step, which
in Redis is one round trip.

Example::

    per_minute = Rate(10, 60.0)
    decision = await limiter.hit("key:7", per_minute)
    if not decision.allowed:
        raise RateLimited("...", retry_after=decision.retry_after)
    decisions = await limiter.hit_many([("key:7", per_minute, 1), ("key:7:t", tokens, 900)])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple, Protocol

Kind = Literal["fixed", "smooth", "concurrent"]


@dataclass(frozen=True, slots=True)
class Rate:
    """``limit`` units per ``window`` seconds, counted as ``kind`` says (see the module).

    >>> Rate(10, 1.0, "smooth").interval
    0.1
    """

    limit: int
    window: float
    kind: Kind = "fixed"
    burst: int = 0  # smooth only; 0: the whole limit may come at once

    def __post_init__(self) -> None:
        if self.limit < 1:
            raise ValueError("a rate's limit must be at least 1")
        if self.window <= 0:
            raise ValueError("a rate's window must be positive")

    @property
    def interval(self) -> float:
        """Seconds one unit takes to come back, for a smooth rate."""
        return self.window / self.limit

    @property
    def capacity(self) -> int:
        """Units a smooth rate allows at once."""
        return self.burst or self.limit


# One hit of a batch: the limiter key, its rate, and the units it takes (or gives back).
Hit = tuple[str, Rate, int]


class Decision(NamedTuple):
    """What a hit was told. ``remaining``: units left now; ``reset_after``: seconds until the
    count is back to full (fixed: the window's end); ``retry_after``: seconds until the same hit
    would be allowed (0 when it was). A named tuple: several are made per limited request."""

    allowed: bool
    remaining: int
    reset_after: float
    retry_after: float = 0.0


# A Decision's fields as a plain tuple, which the hot path makes instead (a Decision is one too).
Verdict = tuple[bool, int, float, float]


class LimiterUnavailable(Exception):
    """The limiter's store cannot be reached; the caller decides to fail open or closed."""


class Limiter(Protocol):
    """Counts hits against rates under string keys; one implementation per store."""

    async def hit(self, key: str, rate: Rate, cost: int = 1) -> Decision:
        """Take ``cost`` units under ``key`` if they fit, atomically; nothing is taken when
        the decision is a denial."""
        ...

    async def hit_many(self, hits: Sequence[Hit]) -> list[Decision]:
        """Take every hit's cost, or nothing at all, atomically (in Redis, one round trip).

        The decisions come in the order of ``hits``, up to and including the first denial:
        when the last one is a denial nothing was taken under any key, and the hits after it
        were not looked at. A key named twice sees the first hit's units taken."""
        ...

    async def refund(self, key: str, rate: Rate, cost: int) -> None:
        """Give ``cost`` units back (a reservation settled lower, a request that ended). A
        negative ``cost`` takes more, whether it fits or not: a reservation settled higher."""
        ...

    async def refund_many(self, refunds: Sequence[Hit]) -> None:
        """:meth:`refund` for each of ``refunds``, in one step (in Redis, one round trip)."""
        ...

    async def usage(self, key: str) -> float:
        """Units counted under ``key`` now (a fixed window's or in-flight count; 0 when
        none), for reports: never use it to decide."""
        ...

    async def usage_many(self, keys: Sequence[str]) -> list[float]:
        """:meth:`usage` of each of ``keys``, in order, in one step (for periodic reports)."""
        ...

    async def aclose(self) -> None: ...
