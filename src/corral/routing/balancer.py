"""Balancer strategies, registered by name: which of the candidate backends gets a request.

A strategy only chooses; the router keeps the counts. Candidates always have a free slot.

>>> balancer = make_balancer("round_robin")
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from corral.backends.backend import Backend
from corral.context import Call


class Balancer(Protocol):
    def choose(self, candidates: Sequence[Backend], call: Call | None) -> Backend: ...


class RoundRobin:
    """Takes turns, as the seed gateways do."""

    def __init__(self) -> None:
        self._next = 0

    def choose(self, candidates: Sequence[Backend], call: Call | None) -> Backend:
        backend = candidates[self._next % len(candidates)]
        self._next += 1
        return backend


class LeastBusy:
    """The backend with the smallest share of its slots in use; ties take turns."""

    def __init__(self) -> None:
        self._turn = 0

    def choose(self, candidates: Sequence[Backend], call: Call | None) -> Backend:
        self._turn += 1
        n = len(candidates)
        best = candidates[self._turn % n]
        best_load = best.in_flight / best.max_concurrency
        for i in range(1, n):
            backend = candidates[(self._turn + i) % n]
            load = backend.in_flight / backend.max_concurrency
            if load < best_load:
                best, best_load = backend, load
        return best


BALANCERS: dict[str, Callable[[], Balancer]] = {
    "round_robin": RoundRobin,
    "least_busy": LeastBusy,
}


def make_balancer(name: str) -> Balancer:
    try:
        return BALANCERS[name]()
    except KeyError:
        raise ValueError(f"unknown strategy {name!r}; choose one of {sorted(BALANCERS)}") from None
