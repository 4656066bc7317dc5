"""Admission to backends: a slot per request, and a bounded FIFO queue when none is free.

``Router.acquire`` returns a :class:`Lease` on one backend's slot. When every candidate is at its
``max_concurrency``, the request waits in one FIFO queue of at most ``queue_size`` entries for at
most ``max_queue_wait`` seconds; a freed slot goes to the oldest waiter that can use that backend.
A waiter whose client leaves is removed at once (its task is cancelled).

Example::

    router = Router(backends, make_balancer("least_busy"), queue_size=100, max_queue_wait=30)
    async with await router.acquire(call) as lease:
        ...  # lease.backend
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from types import TracebackType

from corral.backends.backend import Backend
from corral.context import Call
from corral.errors import ModelNotFound, NoHealthyBackend, QueueFull, QueueTimeout
from corral.routing.balancer import Balancer, WarmAffinity


class Lease:
    """One slot on ``backend``; ``release`` (or leaving ``async with``) gives it back, once."""

    __slots__ = ("_router", "backend", "queued_for", "released")

    def __init__(self, router: Router, backend: Backend, queued_for: float = 0.0) -> None:
        self._router = router
        self.backend = backend
        self.queued_for = queued_for
        self.released = False

    def release(self) -> None:
        if not self.released:
            self.released = True
            self._router._release(self.backend)

    async def __aenter__(self) -> Lease:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


class _Waiter:
    __slots__ = ("call", "candidates", "future")

    def __init__(
        self, candidates: list[Backend], call: Call | None, future: asyncio.Future[Backend]
    ) -> None:
        self.candidates = candidates
        self.call = call
        self.future = future


class Router:
    """Hands out leases on backends' slots, queueing when all are taken."""

    def __init__(
        self,
        backends: list[Backend],
        balancer: Balancer,
        *,
        queue_size: int = 100,
        max_queue_wait: float = 60.0,
    ) -> None:
        # Shared with the fleet, not copied: a reload changes the list in place.
        self.backends = backends
        self.balancer = balancer
        self.queue_size = queue_size
        self.max_queue_wait = max_queue_wait
        self._waiters: deque[_Waiter] = deque()

    @property
    def queued(self) -> int:
        return len(self._waiters)

    def queued_for(self, backend: Backend) -> int:
        return sum(1 for w in self._waiters if backend in w.candidates)

    def holders(self, call: Call | None) -> list[Backend]:
        """Backends that have the call's model (or may: their model list is not known yet).
        Raises ``ModelNotFound`` when none has it."""
        model = call.model_key if call is not None else None
        if model is None:
            return self.backends
        holders = [b for b in self.backends if b.has_model(model) is not False]
        if not holders:
            assert call is not None and call.model is not None
            raise ModelNotFound(call.model, call.endpoint)
        return holders

    def candidates(
        self, call: Call | None, exclude: frozenset[Backend] = frozenset()
    ) -> list[Backend]:
        """Backends that may serve ``call`` now: they have its model, are healthy, not
        draining, their circuit is closed, and they were not tried already."""
        pool = self.holders(call)
        if exclude:
            pool = [b for b in pool if b not in exclude]
        usable = [b for b in pool if b.usable]
        if not usable:
            what = f'model "{call.model}"' if call is not None and call.model else "this request"
            hint = min((b.breaker.retry_in for b in pool), default=0.0)
            raise NoHealthyBackend(
                f"no healthy backend is available for {what}", retry_after=max(1.0, hint)
            )
        return usable

    async def acquire(
        self, call: Call | None = None, exclude: frozenset[Backend] = frozenset()
    ) -> Lease:
        candidates = self.candidates(call, exclude)
        free = [b for b in candidates if b.in_flight < b.max_concurrency]
        balancer = self.balancer
        if (
            isinstance(balancer, WarmAffinity)
            and call is not None
            and call.model_key is not None
            and len(candidates) > 1
        ):
            candidates, free = self._affinity(balancer, call, call.model_key, candidates, free)
        if free and not self._waiters:
            backend = free[0] if len(free) == 1 else balancer.choose(free, call)
            backend.breaker.on_attempt()
            backend.in_flight += 1
            return Lease(self, backend)
        if len(self._waiters) >= self.queue_size:
            raise QueueFull(
                f"all backends are busy and the queue is full ({self.queue_size} waiting)",
                retry_after=self._retry_hint(),
            )
        return await self._wait(candidates, call)

    def _affinity(
        self,
        balancer: WarmAffinity,
        call: Call,
        model: str,
        candidates: list[Backend],
        free: list[Backend],
    ) -> tuple[list[Backend], list[Backend]]:
        """When every warm backend is busy, wait for one if that is cheaper than a cold load."""
        warm = [b for b in candidates if b.is_warm(model, call.num_ctx)]
        if not warm or any(b in free for b in warm):
            return candidates, free
        if not free or balancer.should_wait(warm, free, model, self._waiting_for(warm)):
            return warm, []
        return candidates, free

    def _waiting_for(self, backends: list[Backend]) -> int:
        return sum(1 for w in self._waiters if any(b in w.candidates for b in backends))

    async def _wait(self, candidates: list[Backend], call: Call | None) -> Lease:
        loop = asyncio.get_running_loop()
        waiter = _Waiter(candidates, call, loop.create_future())
        self._waiters.append(waiter)
        started = loop.time()
        # A waiter may be queued behind others while a slot is free (FIFO fairness): try now.
        self._dispatch()
        try:
            if self.max_queue_wait > 0:
                async with asyncio.timeout(self.max_queue_wait):
                    backend = await waiter.future
            else:
                backend = await waiter.future
        except BaseException as exc:
            # Cancelled (the client left) or timed out: leave the queue, and hand on a slot
            # that may have been given to us in the same instant.
            self._abandon(waiter)
            if isinstance(exc, TimeoutError):
                raise QueueTimeout(
                    f"no backend became free within {self.max_queue_wait:g}s",
                    retry_after=self._retry_hint(),
                ) from None
            raise
        return Lease(self, backend, loop.time() - started)

    def _abandon(self, waiter: _Waiter) -> None:
        with contextlib.suppress(ValueError):
            self._waiters.remove(waiter)
        future = waiter.future
        if future.done() and not future.cancelled() and future.exception() is None:
            # A slot was handed over just as the waiter gave up: pass it on.
            self._release(future.result())
        elif not future.done():
            future.cancel()

    def _release(self, backend: Backend) -> None:
        backend.in_flight -= 1
        if self._waiters:
            self._dispatch()

    def _dispatch(self) -> None:
        """Give free slots to the oldest waiters that can use them."""
        for waiter in list(self._waiters):
            if waiter.future.done():
                self._waiters.remove(waiter)
                continue
            free = [b for b in waiter.candidates if b.in_flight < b.max_concurrency]
            if not free:
                continue
            backend = free[0] if len(free) == 1 else self.balancer.choose(free, waiter.call)
            backend.breaker.on_attempt()
            backend.in_flight += 1
            self._waiters.remove(waiter)
            waiter.future.set_result(backend)

    def _retry_hint(self) -> float:
        return max(1.0, min(self.max_queue_wait or 5.0, 30.0) / 2)
