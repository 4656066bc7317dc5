"""Build corral from Settings: Services, the HTTP server, and the start/stop order.

Example::

    app = App(settings)
    await app.start()      # listening on app.port
    ...
    await app.aclose()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from corral.backends.backend import Backend, BackendSpec
from corral.backends.breaker import CircuitBreaker
from corral.backends.fleet import Fleet
from corral.backends.health import HealthChecker
from corral.http.admin import AdminRoutes
from corral.http.cors import CorsPolicy
from corral.http.errors import render_plain
from corral.http.ops import OpsRoutes
from corral.http.proxy import Gateway
from corral.http.server import HttpServer, ServerLimits
from corral.observability.logs import AccessLog, configure_logging
from corral.observability.metrics import Metrics
from corral.routing.balancer import make_balancer
from corral.routing.queue import Router
from corral.services import Services
from corral.settings import Settings

log = logging.getLogger("corral")


def is_blob_upload(method: bytes, url: bytes) -> bool:
    """Model blobs (``ollama create`` from a GGUF file) can be many gigabytes: they are streamed
    to the backend as they arrive instead of being held, and max_body_size does not apply."""
    return method == b"POST" and url.startswith(b"/api/blobs/")


def build_services(settings: Settings, access_log: AccessLog | None = None) -> Services:
    backends = [
        Backend(
            BackendSpec(b.name, b.host, b.port, b.max_concurrency),
            connect_timeout=settings.connect_timeout,
            read_timeout=settings.read_timeout,
            breaker=CircuitBreaker(settings.breaker_failures, settings.breaker_cooldown),
        )
        for b in settings.backends
    ]
    checker = HealthChecker(
        backends, interval=settings.health_interval, timeout=settings.health_timeout
    )
    router = Router(
        backends,
        make_balancer(settings.strategy, load_estimate=settings.model_load_estimate),
        queue_size=settings.queue_size,
        max_queue_wait=settings.max_queue_wait,
    )
    fleet = Fleet(backends, checker)
    metrics = Metrics(
        settings.metrics_namespace,
        by_ip=settings.metrics_by_ip,
        fleet=lambda: fleet.backends,
        router=router,
    )
    return Services(
        metrics=metrics,
        settings=settings,
        backends=backends,
        fleet=fleet,
        router=router,
        admin=AdminRoutes(fleet, router, settings.admin_token),
        cors=CorsPolicy(settings.cors_origins),
        ops=OpsRoutes(backends),
        access_log=access_log or AccessLog(),
    )


class App:
    """corral, assembled: start it, read its port, close it."""

    def __init__(self, settings: Settings, *, access_log: AccessLog | None = None) -> None:
        self.settings = settings
        self.services = build_services(settings, access_log)
        self.gateway = Gateway(self.services)
        limits = ServerLimits(
            max_header_size=settings.max_header_size,
            max_headers=settings.max_headers,
            max_body_size=settings.max_body_size,
            header_timeout=settings.header_timeout,
            keepalive_timeout=settings.keepalive_timeout,
        )
        self.server = HttpServer(
            self.gateway.handle, limits, render_error=render_plain, stream_body=is_blob_upload
        )

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def url(self) -> str:
        return f"http://{self.settings.host}:{self.port}"

    async def start(self) -> None:
        self.services.access_log.start()
        await self.server.start(self.settings.host, self.settings.port)
        # Learn which backends answer, and what they hold, before the first request needs it.
        await self.services.fleet.start()

    async def aclose(self) -> None:
        """Stop order: stop accepting, finish in-flight requests, close upstreams, flush logs."""
        await self.server.aclose()
        await self.services.fleet.aclose()
        await self.services.access_log.aclose()


async def serve(settings: Settings) -> None:
    """Run corral until SIGINT or SIGTERM."""
    configure_logging(settings.log_level)
    app = App(settings)
    await app.start()
    log.info(
        "corral listening on %s",
        app.url,
        extra={"fields": {"backends": [b.url for b in app.services.backends]}},
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        log.info("corral shutting down")
        await app.aclose()
