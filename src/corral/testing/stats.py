"""What a simulator saw: requests per path, generations in flight, and how each one ended.

Tests use it to prove that something reached the backend, and above all that a client going away
did: when corral closes its upstream connection, the generation here ends as ``cancelled`` with
the event loop's time, and :meth:`SimStats.wait_cancelled` returns.

Example::

    record = await sim.stats.wait_cancelled(timeout=1.0)
    assert record.finished_at - client_closed_at < 0.1
    sim.stats.requests["/api/chat"]      # how many chat requests arrived
"""

from __future__ import annotations

import asyncio
import enum
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


class Outcome(enum.StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"
    CANCELLED = "cancelled"  # the client went away (handler cancelled, stream closed early)
    DROPPED = "dropped"  # the simulator cut the connection (drop_after_chunks)
    FAILED = "failed"  # the simulator answered with an error (error_after_chunks)


@dataclass(slots=True)
class GenerationRecord:
    """One piece of model work (or a hung request). Times are ``loop.time()`` seconds."""

    id: int
    path: str
    model: str
    stream: bool
    started_at: float
    finished_at: float | None = None
    outcome: Outcome = Outcome.RUNNING
    chunks: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "path": self.path,
            "model": self.model,
            "stream": self.stream,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "outcome": self.outcome.value,
            "chunks": self.chunks,
        }


class SimStats:
    """Counters and a bounded history of generations, with waits tests can await.

    Example::

        stats = SimStats()
        record = stats.begin("/api/chat", "llama3.2", now=loop.time(), stream=True)
        stats.finish(record, Outcome.CANCELLED, now=loop.time())
        await stats.wait_cancelled(timeout=1.0)     # returns ``record``
    """

    def __init__(self, history: int = 10_000) -> None:
        self.requests: Counter[str] = Counter()
        self.active = 0
        self.outcomes: Counter[Outcome] = Counter()
        self.generations: deque[GenerationRecord] = deque(maxlen=history)
        self.cancelled_event = asyncio.Event()
        self._next_id = 0
        self._changed: asyncio.Event | None = None

    @property
    def started(self) -> int:
        return self._next_id

    @property
    def cancelled(self) -> int:
        return self.outcomes[Outcome.CANCELLED]

    @property
    def completed(self) -> int:
        return self.outcomes[Outcome.COMPLETED]

    def begin(self, path: str, model: str, now: float, stream: bool) -> GenerationRecord:
        self._next_id += 1
        record = GenerationRecord(self._next_id, path, model, stream, now)
        self.generations.append(record)
        self.active += 1
        self._notify()
        return record

    def finish(self, record: GenerationRecord, outcome: Outcome, now: float) -> None:
        """Close ``record`` once; later calls (cleanup after an earlier verdict) are ignored."""
        if record.outcome is not Outcome.RUNNING:
            return
        record.outcome = outcome
        record.finished_at = now
        self.active -= 1
        self.outcomes[outcome] += 1
        if outcome is Outcome.CANCELLED:
            self.cancelled_event.set()
        self._notify()

    # The waits take a ``timeout`` (rather than leaving it to ``asyncio.timeout``) so that a
    # test reads as one line and can never hang the suite by forgetting one.
    async def wait_for(
        self,
        predicate: Callable[[], bool],
        timeout: float = 5.0,  # noqa: ASYNC109
    ) -> None:
        """Return once ``predicate()`` holds, re-checking after every start and finish."""
        async with asyncio.timeout(timeout):
            while not predicate():
                if self._changed is None:
                    self._changed = asyncio.Event()
                await self._changed.wait()

    async def wait_cancelled(
        self,
        timeout: float = 5.0,  # noqa: ASYNC109
        count: int = 1,
    ) -> GenerationRecord:
        """Wait until ``count`` generations were cancelled; return the latest of them."""
        await self.wait_for(lambda: self.cancelled >= count, timeout)
        return next(r for r in reversed(self.generations) if r.outcome is Outcome.CANCELLED)

    async def wait_started(
        self,
        count: int = 1,
        timeout: float = 5.0,  # noqa: ASYNC109
    ) -> GenerationRecord:
        await self.wait_for(lambda: self.started >= count, timeout)
        return self.generations[-1]

    async def wait_idle(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        await self.wait_for(lambda: self.active == 0, timeout)

    def reset(self) -> None:
        """Forget history and counters; generations still running keep counting as active."""
        self.requests.clear()
        self.outcomes.clear()
        self.generations.clear()
        self.cancelled_event.clear()
        self._next_id = 0

    def snapshot(self) -> dict[str, Any]:
        return {
            "requests": dict(self.requests),
            "active": self.active,
            "started": self.started,
            "outcomes": {o.value: n for o, n in self.outcomes.items()},
            "generations": [r.as_dict() for r in self.generations],
        }

    def _notify(self) -> None:
        # Only pay for an Event when someone is waiting.
        changed = self._changed
        if changed is not None:
            self._changed = None
            changed.set()
