"""Balancer strategies, registered by name: which of the candidate backends gets a request.

A strategy only chooses among backends that have a free slot; the router keeps the counts.
``warm`` wraps another strategy (least busy) with model affinity: see :class:`WarmAffinity`.

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


class WarmAffinity:
    """Prefer backends that hold the model in memory (with the asked ``num_ctx``).

    Among free backends, a warm one wins; the ``inner`` strategy breaks ties. The router also
    asks :meth:`should_wait`: is queueing for a busy warm backend cheaper than loading the model
    on a free cold one? Load times are learned per backend and model from Ollama's
    ``load_duration``; until one is seen, ``load_estimate`` seconds are assumed.
    """

    affinity = True

    def __init__(self, inner: Balancer, load_estimate: float = 5.0) -> None:
        self.inner = inner
        self.load_estimate = load_estimate

    def choose(self, candidates: Sequence[Backend], call: Call | None) -> Backend:
        if call is not None and call.model_key is not None and len(candidates) > 1:
            warm = [b for b in candidates if b.is_warm(call.model_key, call.num_ctx)]
            if warm:
                return warm[0] if len(warm) == 1 else self.inner.choose(warm, call)
        return self.inner.choose(candidates, call)

    def load_cost(self, backend: Backend, model: str) -> float:
        seen = backend.load_seconds.get(model)
        return self.load_estimate if seen is None else seen

    def should_wait(
        self, warm: Sequence[Backend], cold_free: Sequence[Backend], model: str, waiting: int
    ) -> bool:
        """Waiting time for a warm slot, against the cheapest cold load."""
        slots = sum(b.max_concurrency for b in warm)
        service = min((b.latency for b in warm if b.latency is not None), default=0.0)
        expected_wait = (waiting + 1) * service / max(1, slots)
        cheapest_load = min(self.load_cost(b, model) for b in cold_free)
        return expected_wait < cheapest_load


BALANCERS: dict[str, Callable[[], Balancer]] = {
    "round_robin": RoundRobin,
    "least_busy": LeastBusy,
    "warm": lambda: WarmAffinity(LeastBusy()),
}


def make_balancer(name: str, *, load_estimate: float = 5.0) -> Balancer:
    try:
        balancer = BALANCERS[name]()
    except KeyError:
        raise ValueError(f"unknown strategy {name!r}; choose one of {sorted(BALANCERS)}") from None
    if isinstance(balancer, WarmAffinity):
        balancer.load_estimate = load_estimate
    return balancer
