"""The Limiter interface (DESIGN.md §5) and the values it takes and gives.

A :class:`Rate` says how much is allowed and how it is counted:

- ``fixed``: at most ``limit`` units in a window of ``window`` seconds that starts with the
  first hit (seed 001's and seed 003's request limits, token budgets per minute or per day);
- ``smooth``: ``limit`` units per ``window`` spread evenly, with up to ``burst`` at once (the
  generic cell rate algorithm, GCRA; seed 002's ``RATE_LIMIT_RPS``);
- ``concurrent``: at most ``limit`` units held at once; every hit is given back with
  :meth:`Limiter.refund` when its request ends. ``window`` is how long an idle count survives,
  so that units held by a process that died are not held forever.

Example::

    per_minute = Rate(10, 60.0)
    decision = await limiter.hit("key:7", per_minute)
    if not decision.allowed:
        raise RateLimited("...", retry_after=decision.retry_after)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

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


@dataclass(frozen=True, slots=True)
class Decision:
    """What a hit was told. ``remaining``: units left now; ``reset_after``: seconds until the
    count is back to full (fixed: the window's end); ``retry_after``: seconds until the same hit
    would be allowed (0 when it was)."""

    allowed: bool
    remaining: int
    reset_after: float
    retry_after: float = 0.0


class LimiterUnavailable(Exception):
    """The limiter's store cannot be reached; the caller decides to fail open or closed."""


class Limiter(Protocol):
    """Counts hits against rates under string keys; one implementation per store."""

    async def hit(self, key: str, rate: Rate, cost: int = 1) -> Decision:
        """Take ``cost`` units under ``key`` if they fit, atomically; nothing is taken when
        the decision is a denial."""
        ...

    async def refund(self, key: str, rate: Rate, cost: int) -> None:
        """Give ``cost`` units back (a reservation settled lower, a request that ended). A
        negative ``cost`` takes more, whether it fits or not: a reservation settled higher."""
        ...

    async def usage(self, key: str) -> float:
        """Units counted under ``key`` now (a fixed window's or in-flight count; 0 when
        none), for reports: never use it to decide."""
        ...

    async def aclose(self) -> None: ...
