"""The usage queue: requests append records in memory; one background task writes them in
batches. This is the ``UsageStore`` of DESIGN.md §5: ``record`` never blocks, ``flush`` writes
what is queued, ``query`` reads totals.

A full queue drops the record and counts it (``dropped``): a slow database must never slow a
request, and a queue without a bound would turn a database outage into an out-of-memory one.

Example::

    writer = UsageWriter(SqlUsageStore(database), max_queue=10_000, batch_size=500, interval=1.0)
    writer.start()
    writer.record(UsageRecord(ts=now, route="/api/chat", status=200))   # a deque append
    await writer.aclose()                                               # writes what is left
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import Protocol

from sqlalchemy.exc import SQLAlchemyError

from corral.storage.usage import UsageQuery, UsageRecord, UsageTotals

log = logging.getLogger("corral.usage")


class UsageTable(Protocol):
    async def insert(self, batch: list[UsageRecord]) -> None: ...
    async def query(self, query: UsageQuery) -> list[UsageTotals]: ...


class UsageWriter:
    def __init__(
        self,
        table: UsageTable,
        *,
        max_queue: int = 10_000,
        batch_size: int = 500,
        interval: float = 1.0,
    ) -> None:
        self.table = table
        self.max_queue = max_queue
        self.batch_size = batch_size
        self.interval = interval
        self.dropped = 0
        self.written = 0
        self._queue: deque[UsageRecord] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._closing = False

    def record(self, record: UsageRecord) -> None:
        """Queue ``record``; drop it (and count the drop) when the queue is full."""
        queue = self._queue
        if len(queue) >= self.max_queue:
            self.dropped += 1
            return
        queue.append(record)
        if len(queue) == self.batch_size:
            self._wake.set()

    @property
    def queued(self) -> int:
        return len(self._queue)

    async def flush(self) -> None:
        """Write everything queued now, a batch at a time. A failed batch is put back at the
        front (within the bound) and the error logged; the next round tries again."""
        async with self._lock:
            while self._queue:
                count = min(self.batch_size, len(self._queue))
                batch = [self._queue.popleft() for _ in range(count)]
                try:
                    await self.table.insert(batch)
                except (SQLAlchemyError, OSError) as exc:
                    log.warning("cannot write %d usage records: %s", count, type(exc).__name__)
                    room = self.max_queue - len(self._queue)
                    self._queue.extendleft(reversed(batch[:room]))
                    self.dropped += max(0, count - room)
                    return
                self.written += count

    async def query(self, query: UsageQuery) -> list[UsageTotals]:
        return await self.table.query(query)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="usage-writer")

    async def _run(self) -> None:
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)
            self._wake.clear()
            await self.flush()

    async def aclose(self) -> None:
        """Stop the writer and write what is left (shutdown's last word on usage)."""
        # Not cancelled: a batch half-way into the database would be lost.
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None
        await self.flush()
        if self.dropped:
            log.warning("%d usage records were dropped (queue full or database down)", self.dropped)
