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
from collections.abc import Sequence
from types import TracebackType

from corral.backends.backend import Backend
from corral.context import Call
from corral.errors import NoHealthyBackend, QueueFull, QueueTimeout
from corral.routing.balancer import Balancer


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
        backends: Sequence[Backend],
        balancer: Balancer,
        *,
        queue_size: int = 100,
        max_queue_wait: float = 60.0,
    ) -> None:
        self.backends = list(backends)
        self.balancer = balancer
        self.queue_size = queue_size
        self.max_queue_wait = max_queue_wait
        self._waiters: deque[_Waiter] = deque()

    @property
    def queued(self) -> int:
        return len(self._waiters)

    def candidates(
        self, call: Call | None, exclude: frozenset[Backend] = frozenset()
    ) -> list[Backend]:
        """Backends that may serve ``call``: not excluded, and not known to be down (unless all
        are: then a request is the quickest way to find out whether one came back)."""
        pool = [b for b in self.backends if b not in exclude] if exclude else self.backends
        usable = [b for b in pool if b.usable]
        return usable or list(pool)

    async def acquire(
        self, call: Call | None = None, exclude: frozenset[Backend] = frozenset()
    ) -> Lease:
        candidates = self.candidates(call, exclude)
        if not candidates:
            raise NoHealthyBackend("no backend is available", retry_after=1)
        free = [b for b in candidates if b.in_flight < b.max_concurrency]
        if free and not self._waiters:
            backend = free[0] if len(free) == 1 else self.balancer.choose(free, call)
            backend.in_flight += 1
            return Lease(self, backend)
        if len(self._waiters) >= self.queue_size:
            raise QueueFull(
                f"all backends are busy and the queue is full ({self.queue_size} waiting)",
                retry_after=self._retry_hint(),
            )
        return await self._wait(candidates, call)

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
            backend.in_flight += 1
            self._waiters.remove(waiter)
            waiter.future.set_result(backend)

    def _retry_hint(self) -> float:
        return max(1.0, min(self.max_queue_wait or 5.0, 30.0) / 2)
