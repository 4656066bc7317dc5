"""The fleet: every backend, their health checks, and keeping the model index fresh.

The model index is each backend's ``models`` (from ``/api/tags``). It is refreshed by the health
checker on its interval, right after a pull, create, copy or delete through corral, and at most
once a second when a request names a model no backend seems to have.

Example::

    fleet = Fleet(backends, HealthChecker(backends, interval=5))
    await fleet.start()
    fleet.get("gpu1")
    await fleet.aclose()
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Iterable, Sequence
from typing import Any

from corral.backends.backend import Backend, BackendSpec
from corral.backends.health import HealthChecker
from corral.tasks import cancel

log = logging.getLogger("corral.backends")


class Fleet:
    def __init__(
        self,
        backends: Sequence[Backend],
        checker: HealthChecker,
        *,
        refresh_interval: float = 1.0,
    ) -> None:
        # The one list of backends, shared with the router and the health checker.
        self.backends = backends if isinstance(backends, list) else list(backends)
        self.checker = checker
        self.refresh_interval = refresh_interval
        self._by_name = {b.name: b for b in self.backends}
        self._refreshed_at = float("-inf")
        self._refreshing: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def get(self, name: str) -> Backend | None:
        return self._by_name.get(name)

    @property
    def usable(self) -> list[Backend]:
        return [b for b in self.backends if b.usable]

    async def start(self) -> None:
        await self.checker.check_all()
        self._refreshed_at = time.monotonic()
        self.checker.start()

    async def refresh_models_if_stale(self) -> bool:
        """Re-read every backend's models, unless that was done within ``refresh_interval``.
        Concurrent callers share one refresh. Returns whether the index may have changed."""
        if time.monotonic() - self._refreshed_at < self.refresh_interval:
            return False
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.get_running_loop().create_task(self._refresh_all())
        await asyncio.shield(self._refreshing)
        return True

    async def _refresh_all(self) -> None:
        await asyncio.gather(*(b.refresh_models() for b in self.backends if b.usable))
        self._refreshed_at = time.monotonic()

    def models_changed(
        self, backends: Iterable[Backend], added: Iterable[str] = (), removed: Iterable[str] = ()
    ) -> None:
        """After a pull, create, copy or delete: note the change in the index at once, so the
        very next request finds the model, then re-read the backends' models (for digests)."""
        added, removed = list(added), list(removed)
        for backend in backends:
            if backend.models is not None:
                for model in added:
                    # Present, digest unknown until the re-read: a re-pull may have changed it,
                    # and the cache must not serve the old model's answers meanwhile.
                    backend.models[model] = ""
                for model in removed:
                    backend.models.pop(model, None)
                    backend.loaded.pop(model, None)
            self._spawn(backend.refresh_models())

    async def reconcile(
        self, specs: Sequence[BackendSpec], make: Callable[[BackendSpec], Backend]
    ) -> None:
        """Make the fleet match ``specs`` (a reload): unchanged backends stay as they are, new
        ones are checked before they get traffic, removed ones stop getting traffic at once and
        are closed once the requests they are serving have finished."""
        current = {b.name: b for b in self.backends}
        wanted: list[Backend] = []
        fresh: list[Backend] = []
        for spec in specs:
            backend = current.get(spec.name)
            if backend is not None and backend.url == spec.url:
                backend.resize(spec.max_concurrency)
                current.pop(spec.name)
            else:
                backend = make(spec)
                fresh.append(backend)
            wanted.append(backend)
        await asyncio.gather(*(self.checker.check(b) for b in fresh))
        self.backends[:] = wanted
        self._by_name = {b.name: b for b in wanted}
        for backend in fresh:
            self.checker.watch(backend)
        for backend in current.values():
            backend.draining = True
            self.checker.unwatch(backend)
            self._spawn(self._retire(backend))
        if fresh or current:
            log.info(
                "fleet reloaded: %d added, %d removed",
                len(fresh),
                len(current),
                extra={"fields": {"backends": [b.name for b in wanted]}},
            )

    async def _retire(self, backend: Backend) -> None:
        # Rare (a reload), so a poll of the counter rather than an event the hot path must set.
        while backend.in_flight:  # noqa: ASYNC110
            await asyncio.sleep(0.1)
        await backend.aclose()

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def aclose(self) -> None:
        await self.checker.aclose()
        await cancel(*self._tasks)
        for backend in self.backends:
            await backend.aclose()
