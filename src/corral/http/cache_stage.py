"""The cache stage of the request flow (DESIGN.md §3, step 5): hit, miss or bypass.

For the cacheable endpoints :meth:`CacheStage.admit` returns a :class:`Ticket`, decided in this
order, cheapest first:

1. Not cacheable by policy (a sampled chat, ``cache_mode = off``), ``Cache-Control: no-store``,
   or a model whose digest is not known yet: *bypass*, before anything is hashed.
2. The key is computed once, from the fields already parsed.
3. An identical request already in flight: *follow* it and share its answer (coalescing).
4. The store: a memory store answers without suspending; a Redis store costs one round trip.
   A hit is replayed in the shape asked for, and the backend is never asked.
5. Otherwise a *miss*: the request leads a flight, goes on to the backends, and its answer is
   captured as it is relayed (a list append per chunk) and kept when it ends whole.

``Cache-Control: no-cache`` skips steps 3 and 4 but still keeps the fresh answer. Every answer
of a cacheable endpoint says which way it went in ``X-Corral-Cache: hit|miss|bypass``; the
access log line says it as ``"cache"``.

Example::

    stage = CacheStage(MemoryCache(64 * MiB), router, mode="deterministic", ttl=3600)
    ticket = stage.admit(call, request)          # None: not a cacheable endpoint
    hit = ticket.hit if ticket.settled else await ticket.settle()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from corral.cache.coalesce import Flights
from corral.cache.entry import CachedAnswer
from corral.cache.key import cache_key
from corral.cache.policy import KINDS, CachePolicy, Directive, Mode, directive
from corral.cache.report import CacheCounters, CacheReport
from corral.cache.store import Cache, CacheStats, CacheUnavailable, LocalCache
from corral.context import Call
from corral.errors import ModelNotFound
from corral.http.cache_ticket import BYPASS, Ticket
from corral.http.messages import Request

if TYPE_CHECKING:
    from corral.routing.queue import Router

log = logging.getLogger("corral.cache")

# Writes to a remote store waiting at once; past this a slow Redis loses writes, not memory.
MAX_PENDING_WRITES = 256
# Seconds between two looks at a remote store's size for /metrics (a SCAN of the namespace).
REMOTE_STATS_INTERVAL = 30.0


class CacheStage:
    """Looks requests up, coalesces identical ones, and keeps the answers of misses."""

    def __init__(
        self,
        store: Cache,
        router: Router,
        *,
        mode: Mode = "deterministic",
        ttl: float = 3600.0,
        max_entry_size: int = 4 * 1024 * 1024,
    ) -> None:
        self.store = store
        self.router = router
        self.policy = CachePolicy(mode)
        self.ttl = ttl
        self.max_entry_size = max_entry_size
        self.counters = CacheCounters()
        self.flights: Flights[CachedAnswer] = Flights()
        # Decided once: a store in this process is used without suspending.
        self.local = store if isinstance(store, LocalCache) else None
        self._writes: set[asyncio.Task[None]] = set()
        self._remote_stats: CacheStats | None = None
        self._remote_stats_task: asyncio.Task[None] | None = None
        self._remote_stats_at = float("-inf")
        self._failing = False

    def configure(self, mode: Mode, ttl: float, max_entry_size: int) -> None:
        """Apply reloaded settings; answers already kept stay until their own expiry."""
        self.policy = CachePolicy(mode)
        self.ttl = ttl
        self.max_entry_size = max_entry_size

    # ---- the request path -------------------------------------------------------------------

    def admit(self, call: Call, request: Request) -> Ticket | None:
        """The ticket for ``call``; None when its endpoint is not cacheable at all."""
        kind = KINDS.get(call.endpoint)
        if kind is None:
            return None
        if not self.policy.cacheable(kind, call.fields):
            return self._bypass(request)
        wish = directive(request.headers.get_bytes(b"cache-control"))
        if wish is Directive.SKIP:
            return self._bypass(request)
        digest = self._digest(call)
        if digest is None:
            return self._bypass(request)
        assert call.model is not None
        key = cache_key(kind.name, call.model, digest, call.fields)
        ticket = Ticket(self, request, kind, key, call)
        ticket.begin(refresh=wish is Directive.REFRESH)
        return ticket

    def _bypass(self, request: Request) -> Ticket:
        self.counters.bypasses += 1
        request.state["cache"] = "bypass"
        return BYPASS

    def _digest(self, call: Call) -> str | None:
        """The digest of the model on every backend that may answer; None while one of them
        is unknown (the index is loading, or a pull just changed it)."""
        model = call.model_key
        try:
            holders = self.router.holders(call)
        except ModelNotFound:
            return None  # the request path answers 404 after one more look
        digests: set[str] = set()
        for backend in holders:
            models = backend.models
            digest = models.get(model) if models is not None and model is not None else None
            if not digest:
                return None
            digests.add(digest)
        # Backends that disagree may each answer: the key names them all.
        return digests.pop() if len(digests) == 1 else ",".join(sorted(digests))

    def keep(self, key: str, answer: CachedAnswer) -> None:
        value = answer.encode()
        local = self.local
        if local is not None:
            local.set_nowait(key, value, self.ttl)
        elif len(self._writes) < MAX_PENDING_WRITES:
            task = asyncio.get_running_loop().create_task(self._write(key, value))
            self._writes.add(task)
            task.add_done_callback(self._writes.discard)
        else:
            self.counters.errors += 1

    async def _write(self, key: str, value: bytes) -> None:
        try:
            await self.store.set(key, value, self.ttl)
        except CacheUnavailable as err:
            self.failed(err)
        else:
            self.recovered()

    async def fetch(self, key: str) -> CachedAnswer | None:
        try:
            value = await self.store.get(key)
        except CacheUnavailable as err:
            self.failed(err)
            return None
        self.recovered()
        return CachedAnswer.decode(value) if value is not None else None

    def failed(self, err: CacheUnavailable) -> None:
        self.counters.errors += 1
        if not self._failing:
            self._failing = True
            log.warning("response cache unavailable, requests go on uncached: %s", err)

    def recovered(self) -> None:
        if self._failing:
            self._failing = False
            log.info("response cache available again")

    # ---- administration ---------------------------------------------------------------------

    def report(self) -> CacheReport:
        """Counters and the store's size, without suspending (for /metrics). A remote store's
        size is the last one measured; a stale one is measured again in the background."""
        if self.local is not None:
            return CacheReport(self.counters, self.local.stats_nowait())
        loop = asyncio.get_running_loop()
        idle = self._remote_stats_task is None or self._remote_stats_task.done()
        if idle and loop.time() - self._remote_stats_at > REMOTE_STATS_INTERVAL:
            self._remote_stats_at = loop.time()
            self._remote_stats_task = loop.create_task(self._measure())
        return CacheReport(self.counters, self._remote_stats)

    async def _measure(self) -> None:
        with contextlib.suppress(CacheUnavailable):
            self._remote_stats = await self.store.stats()

    async def stats(self) -> dict[str, Any]:
        """Everything about the cache, for ``GET /admin/cache`` and ``corral cache stats``.
        Raises CacheUnavailable."""
        store = await self.store.stats()
        if self.local is None:
            self._remote_stats = store
        return {
            **store.as_dict(),
            **asdict(self.counters),
            "mode": self.policy.mode,
            "ttl": self.ttl,
            "in_flight": len(self.flights),
        }

    async def clear(self) -> int:
        """Forget every kept answer; raises CacheUnavailable."""
        cleared = await self.store.clear()
        log.info("response cache cleared", extra={"fields": {"entries": cleared}})
        return cleared

    async def aclose(self, timeout: float = 2.0) -> None:  # noqa: ASYNC109
        """Finish the writes under way (for at most ``timeout`` seconds), then close the store."""
        pending = [*self._writes]
        if self._remote_stats_task is not None:
            pending.append(self._remote_stats_task)
        if pending:
            _, late = await asyncio.wait(pending, timeout=timeout)
            for task in late:
                task.cancel()
        await self.store.aclose()
