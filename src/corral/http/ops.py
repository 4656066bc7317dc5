"""Routes corral answers itself: ``/`` (as Ollama does), ``/health`` and ``/healthz``."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from corral.http.messages import Request, Response

if TYPE_CHECKING:
    from corral.backends.backend import Backend
    from corral.http.routes import Endpoint

_RUNNING = Response(200, b"Ollama is running", [(b"Content-Type", b"text/plain; charset=utf-8")])


class OpsRoutes:
    """``/health`` reports what the health checker last saw of each backend; it does not probe,
    so a load balancer polling it never turns into a probe storm on the fleet."""

    def __init__(self, backends: Sequence[Backend]) -> None:
        self.backends = backends

    async def answer(self, endpoint: Endpoint, request: Request) -> Response:
        if endpoint.name == "/":
            return Response(_RUNNING.status, _RUNNING.body, list(_RUNNING.headers))
        if endpoint.name == "/healthz":
            return Response.json(200, {"status": "ok"})
        return self.health()

    def health(self) -> Response:
        backends = [b.snapshot() for b in self.backends]
        healthy = any(b.usable for b in self.backends)
        payload: dict[str, Any] = {
            "status": "healthy" if healthy else "unhealthy",
            "backends": backends,
            "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        }
        return Response.json(200 if healthy else 503, payload)
