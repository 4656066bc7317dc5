"""Active health checks: every ``interval`` seconds, each backend is probed
(``GET /api/version`` with a short timeout) and, when it answers, its models are read
(``/api/tags``, ``/api/ps``). One task per backend, owned here and cancelled on close.

Example::

    checker = HealthChecker(backends, interval=5.0)
    await checker.check_all()      # once, before serving
    checker.start()
    ...
    await checker.aclose()
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from corral.backends.backend import Backend
from corral.tasks import cancel


class HealthChecker:
    def __init__(
        self, backends: Sequence[Backend], *, interval: float = 5.0, timeout: float = 2.0
    ) -> None:
        self.backends = backends
        self.interval = interval
        self.timeout = timeout
        self._tasks: dict[Backend, asyncio.Task[None]] = {}

    async def check(self, backend: Backend) -> bool:
        if await backend.probe(self.timeout):
            await backend.refresh_models(max(self.timeout, 5.0))
            return True
        return False

    async def check_all(self) -> None:
        await asyncio.gather(*(self.check(b) for b in self.backends))

    def start(self) -> None:
        for backend in self.backends:
            self.watch(backend)

    def watch(self, backend: Backend) -> None:
        if backend not in self._tasks:
            task = asyncio.get_running_loop().create_task(
                self._run(backend), name=f"health:{backend.name}"
            )
            self._tasks[backend] = task

    def unwatch(self, backend: Backend) -> None:
        task = self._tasks.pop(backend, None)
        if task is not None:
            task.cancel()

    async def _run(self, backend: Backend) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self.check(backend)

    async def aclose(self) -> None:
        tasks = list(self._tasks.values())
        self._tasks = {}
        await cancel(*tasks)
