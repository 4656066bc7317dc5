"""Request coalescing: identical requests in flight at once reach the backend once.

The first request for a key leads a :class:`Flight`; those that arrive while it runs follow it
and wait for its answer instead of asking a backend again. When the leader ends it lands the
flight with the answer it kept, or with ``None`` when there is nothing to share. Followers then
go on by themselves: at once when the leader's answer was whole but not worth keeping (another
ask would not do better), or, when the leader failed (a backend error, a cut stream, a client
that left: ``retry``), behind the first of them, who leads a new flight for the others.

Only requests whose answer the cache may keep are coalesced: sharing is the same promise as a
cache hit, made a little earlier.

Example::

    flights = Flights()
    flight = flights.lead(key)              # the first request
    ...                                     # a second one: flights.get(key) is flight
    answer = await flights.get(key).wait()  # (follower) the leader's answer, or None
    flights.land(flight, answer)            # (leader) once its relay has ended
    flights.land(flight, None, retry=True)  # (leader) it failed: a follower may lead again
"""

from __future__ import annotations

import asyncio
from typing import Generic, TypeVar

T = TypeVar("T")


class Flight(Generic[T]):
    """One request in flight, and the answer it will share."""

    __slots__ = ("_future", "followers", "key", "retry")

    def __init__(self, key: str, future: asyncio.Future[T | None]) -> None:
        self.key = key
        self._future = future
        self.followers = 0
        # Set when the leader failed: its followers may try again behind a new leader.
        self.retry = False

    async def wait(self) -> T | None:
        self.followers += 1
        # Shielded: a follower whose client leaves must not cancel the answer the others await.
        return await asyncio.shield(self._future)

    @property
    def landed(self) -> bool:
        return self._future.done()


class Flights(Generic[T]):
    """The flights in progress, by key: ``flights.get(key)`` to follow, ``lead`` and ``land``
    to run one (see the module's example)."""

    def __init__(self) -> None:
        self._flights: dict[str, Flight[T]] = {}

    def __len__(self) -> int:
        return len(self._flights)

    def get(self, key: str) -> Flight[T] | None:
        return self._flights.get(key)

    def lead(self, key: str) -> Flight[T]:
        """Start the flight for ``key``; there must be none."""
        assert key not in self._flights
        flight: Flight[T] = Flight(key, asyncio.get_running_loop().create_future())
        self._flights[key] = flight
        return flight

    def land(self, flight: Flight[T], answer: T | None, *, retry: bool = False) -> None:
        """End ``flight``: its followers get ``answer`` (and ``retry``, when the leader
        failed). A second landing does nothing."""
        if self._flights.get(flight.key) is flight:
            del self._flights[flight.key]
        if not flight._future.done():
            flight.retry = retry
            flight._future.set_result(answer)
