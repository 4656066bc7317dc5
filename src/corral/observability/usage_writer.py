"""The usage queue: requests hand their records over in memory; one background task writes them
in batches. This is the ``UsageStore`` of DESIGN.md §5: ``record`` never blocks, ``flush`` writes
what is pending, ``query`` reads totals.

Per minute (the default), a record is added into the pending row of its minute, key, model,
backend, route and status: a dictionary lookup and a few additions, however many requests a
second arrive, and a handful of rows a minute for the database. Per request, each record is
its own row, with the request's id and client address: an audit trail, at the price of a row
insert for every request (about ten microseconds of a core on SQLite).

Pending rows are bounded (``max_queue``): past it, a record is dropped and counted
(``dropped``). A slow database must never slow a request, and an unbounded queue would turn a
database outage into an out-of-memory one.

Example::

    writer = UsageWriter(SqlUsageStore(database), max_queue=10_000, batch_size=500, interval=1.0)
    writer.start()
    writer.record(UsageRecord(ts=time.time(), route="/api/chat", status=200))
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

# What makes two records one row when usage is kept per minute.
RowKey = tuple[int, int | None, str | None, str | None, str, int]


class UsageTable(Protocol):
    async def insert(self, batch: list[UsageRecord]) -> None: ...
    async def query(self, query: UsageQuery) -> list[UsageTotals]: ...


class UsageWriter:
    """Pending usage and the task that writes it.

    ``written`` and ``dropped`` count requests (a row per minute counts many).
    """

    def __init__(
        self,
        table: UsageTable,
        *,
        per_request: bool = False,
        max_queue: int = 10_000,
        batch_size: int = 500,
        interval: float = 1.0,
    ) -> None:
        self.table = table
        self.per_request = per_request
        self.max_queue = max_queue
        self.batch_size = batch_size
        self.interval = interval
        self.dropped = 0
        self.written = 0
        self._queue: deque[UsageRecord] = deque()
        self._minutes: dict[RowKey, UsageRecord] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._closing = False

    def record(self, record: UsageRecord) -> None:
        """Take ``record`` (the writer owns it from now on); drop it, and count the drop, when
        the pending rows are at their bound."""
        if self.per_request:
            queue = self._queue
            if len(queue) >= self.max_queue:
                self.dropped += record.requests
                return
            queue.append(record)
            if len(queue) == self.batch_size:
                self._wake.set()
            return
        key = (int(record.ts // 60), record.key_id, record.model, record.backend,
               record.route, record.status)  # fmt: skip
        row = self._minutes.get(key)
        if row is not None:
            row.add(record)
        else:
            self._start_row(key, record)

    def _start_row(self, key: RowKey, record: UsageRecord) -> None:
        """``record`` becomes the pending row of its minute, if the bound leaves room."""
        if len(self._minutes) >= self.max_queue:
            self.dropped += record.requests
            return
        # The row stands for the minute; a single request's details are not kept.
        record.ts = key[0] * 60.0
        record.request_id = record.client_ip = None
        self._minutes[key] = record

    def count(
        self,
        ts: float,
        route: str,
        status: int,
        key_id: int | None,
        model: str | None,
        backend: str | None,
        request_id: str | None,
        client_ip: str | None,
        prompt_tokens: int | None,
        completion_tokens: int | None,
        duration_ms: float | None,
        ttft_ms: float | None,
        queue_ms: float | None,
    ) -> None:
        """:meth:`record` of one request, from its figures: per minute, a request that joins
        a pending row is added in place, without a record of its own (this runs for every
        request)."""
        if self.per_request:
            self.record(
                UsageRecord(
                    ts, route, status, key_id, model, backend, request_id, client_ip,
                    prompt_tokens, completion_tokens, duration_ms, ttft_ms, queue_ms,
                )
            )  # fmt: skip
            return
        key = (int(ts // 60), key_id, model, backend, route, status)
        row = self._minutes.get(key)
        if row is not None:
            row.add_figures(1, prompt_tokens, completion_tokens, duration_ms, ttft_ms, queue_ms)
        else:
            self._start_row(
                key,
                UsageRecord(
                    ts, route, status, key_id, model, backend, None, None,
                    prompt_tokens, completion_tokens, duration_ms, ttft_ms, queue_ms,
                ),
            )  # fmt: skip

    @property
    def queued(self) -> int:
        """Rows waiting to be written."""
        return len(self._queue) + len(self._minutes)

    async def flush(self) -> None:
        """Write everything pending now, a batch at a time. A batch that fails is kept (within
        the bound) and the error logged; the next round tries again."""
        async with self._lock:
            if self._minutes:
                # Rows of the current minute go now too: the next flush adds a row for the
                # rest of it, and reports add the two up.
                self._queue.extend(self._minutes.values())
                self._minutes = {}
            while self._queue:
                count = min(self.batch_size, len(self._queue))
                batch = [self._queue.popleft() for _ in range(count)]
                try:
                    await self.table.insert(batch)
                except (SQLAlchemyError, OSError) as exc:
                    log.warning("cannot write %d usage rows: %s", count, type(exc).__name__)
                    self._keep(batch)
                    return
                self.written += sum(row.requests for row in batch)

    def _keep(self, batch: list[UsageRecord]) -> None:
        """Put a batch that could not be written back in front, dropping what exceeds the bound."""
        room = max(0, self.max_queue - len(self._queue) - len(self._minutes))
        self._queue.extendleft(reversed(batch[:room]))
        self.dropped += sum(row.requests for row in batch[room:])

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
