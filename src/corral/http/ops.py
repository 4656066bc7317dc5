"""Routes corral answers itself: ``/`` (as Ollama does), ``/health`` and ``/healthz``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from corral.http.messages import Request, Response

if TYPE_CHECKING:
    from corral.backends.backend import Backend
    from corral.http.routes import Endpoint

_RUNNING = Response(200, b"Ollama is running", [(b"Content-Type", b"text/plain; charset=utf-8")])


class OpsRoutes:
    """``/health`` probes every backend (``GET /api/version``) at most once per ``max_age``
    seconds, so a load balancer polling it does not turn into a probe storm on the fleet."""

    def __init__(
        self, backends: Sequence[Backend], *, probe_timeout: float = 2.0, max_age: float = 1.0
    ) -> None:
        self.backends = backends
        self.probe_timeout = probe_timeout
        self.max_age = max_age
        self._probed_at = float("-inf")
        self._probing: asyncio.Task[None] | None = None

    async def answer(self, endpoint: Endpoint, request: Request) -> Response:
        if endpoint.name == "/":
            return Response(_RUNNING.status, _RUNNING.body, list(_RUNNING.headers))
        if endpoint.name == "/healthz":
            return Response.json(200, {"status": "ok"})
        return await self.health()

    async def health(self) -> Response:
        await self._refresh()
        backends = [b.snapshot() for b in self.backends]
        healthy = any(b["state"] == "up" for b in backends)
        payload: dict[str, Any] = {
            "status": "healthy" if healthy else "unhealthy",
            "backends": backends,
            "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        }
        return Response.json(200 if healthy else 503, payload)

    async def _refresh(self) -> None:
        if time.monotonic() - self._probed_at < self.max_age:
            return
        if self._probing is None or self._probing.done():
            self._probing = asyncio.get_running_loop().create_task(self._probe_all())
        # Shielded: one caller leaving must not cancel the probe the others wait for.
        await asyncio.shield(self._probing)

    async def _probe_all(self) -> None:
        await asyncio.gather(*(b.probe(self.probe_timeout) for b in self.backends))
        self._probed_at = time.monotonic()
