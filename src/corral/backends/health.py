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
import contextlib
from collections.abc import Sequence

from corral.backends.backend import Backend


class HealthChecker:
    def __init__(
        self, backends: Sequence[Backend], *, interval: float = 5.0, timeout: float = 2.0
    ) -> None:
        self.backends = backends
        self.interval = interval
        self.timeout = timeout
        self._tasks: list[asyncio.Task[None]] = []

    async def check(self, backend: Backend) -> bool:
        if await backend.probe(self.timeout):
            await backend.refresh_models(max(self.timeout, 5.0))
            return True
        return False

    async def check_all(self) -> None:
        await asyncio.gather(*(self.check(b) for b in self.backends))

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._run(b), name=f"health:{b.name}") for b in self.backends
        ]

    async def _run(self, backend: Backend) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self.check(backend)

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
