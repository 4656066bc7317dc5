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
import gc
import logging
import signal
from collections.abc import Callable

from corral.admin import AdminService, SettingsReloader
from corral.auth.access import AccessControl
from corral.auth.activity import KeyActivity
from corral.auth.authenticator import Authenticator
from corral.auth.keyring import KeyRing
from corral.auth.notices import notices_for
from corral.backends.backend import Backend, BackendSpec
from corral.backends.breaker import CircuitBreaker
from corral.backends.fleet import Fleet
from corral.backends.health import HealthChecker
from corral.cache.store import open_store
from corral.descriptors import RESERVED, raise_open_file_limit, reserve_descriptor_table
from corral.http.admin import AdminRoutes
from corral.http.cache_stage import CacheStage
from corral.http.cors import CorsPolicy
from corral.http.errors import render_plain
from corral.http.fleet import FleetRoutes
from corral.http.limit_stage import LimitStage
from corral.http.ops import OpsRoutes
from corral.http.proxy import Gateway
from corral.http.server import HttpServer, ServerLimits
from corral.limits.memory import MemoryLimiter
from corral.limits.rate import Limiter
from corral.observability.accounting import RequestAccounting, open_recording
from corral.observability.logs import AccessLog, configure_logging, raw_writer
from corral.observability.metrics import Metrics
from corral.observability.usage_writer import UsageWriter
from corral.observability.webhooks import Webhooks
from corral.routing.balancer import make_balancer
from corral.routing.queue import Router
from corral.services import Services
from corral.settings import Settings, SettingsError
from corral.storage.engine import Database, DatabaseUnavailable
from corral.storage.keys import SqlKeyStore
from corral.storage.usage import SqlUsageStore

log = logging.getLogger("corral")
# Young collections between two collections of the middle generation (the interpreter's default
# is 10), and middle collections between two full ones (default 10).
MIDDLE_COLLECTION_EVERY = 2
FULL_COLLECTION_EVERY = 500
# Below this many open files (two per relayed stream), say so at start.
FEW_OPEN_FILES = 4096


def is_blob_upload(method: bytes, url: bytes) -> bool:
    """Model blobs (``ollama create`` from a GGUF file) can be many gigabytes: they are streamed
    to the backend as they arrive instead of being held, and max_body_size does not apply."""
    return method == b"POST" and url.startswith(b"/api/blobs/")


def make_backend(settings: Settings, spec: BackendSpec) -> Backend:
    return Backend(
        spec,
        connect_timeout=settings.connect_timeout,
        read_timeout=settings.read_timeout,
        breaker=CircuitBreaker(settings.breaker_failures, settings.breaker_cooldown),
    )


def backend_specs(settings: Settings) -> list[BackendSpec]:
    return [BackendSpec(b.name, b.host, b.port, b.max_concurrency) for b in settings.backends]


def recording_counters(usage: UsageWriter | None, webhooks: Webhooks) -> dict[str, float]:
    counts: dict[str, float] = {
        "corral_webhook_deliveries": webhooks.delivered,
        "corral_webhook_failures": webhooks.failures,
        "corral_webhook_events_dropped": webhooks.dropped,
    }
    if usage is not None:
        counts["corral_usage_records_written"] = usage.written
        counts["corral_usage_records_dropped"] = usage.dropped
    return counts


def open_limiter(settings: Settings) -> Limiter:
    """Limits shared through Redis when redis_url is set, else counted in this process."""
    if settings.redis_url is None:
        return MemoryLimiter()
    # Imported only when used: the Redis client costs memory a single instance has no use for.
    from corral.limits.redis import RedisLimiter

    return RedisLimiter.from_url(settings.redis_url, prefix=settings.redis_prefix + "limits:")


def build_services(settings: Settings, access_log: AccessLog | None = None) -> Services:
    # One list, shared by the fleet, the router, health and metrics: a reload edits it in place.
    backends = [make_backend(settings, spec) for spec in backend_specs(settings)]
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
    cache = CacheStage(
        open_store(settings),
        router,
        mode=settings.cache_mode,
        ttl=settings.cache_ttl,
        max_entry_size=settings.cache_max_entry_size,
    )
    metrics = Metrics(
        settings.metrics_namespace,
        by_ip=settings.metrics_by_ip,
        fleet=lambda: fleet.backends,
        router=router,
        cache=cache.report,
    )
    database = Database.from_settings(settings)
    store = SqlKeyStore(database)
    keyring = KeyRing(store, interval=settings.auth.refresh_interval)
    key_notices = notices_for(settings)
    key_activity = KeyActivity(store, interval=settings.auth.flush_interval)
    key_admin = AdminService(store, key_notices, keyring=keyring)
    usage, webhooks = open_recording(settings, database)
    limits = LimitStage(open_limiter(settings), settings.limits, metrics)
    authenticator = Authenticator(keyring)
    limits.report_keys(keyring, authenticator.declared)
    metrics.count_recording(lambda: recording_counters(usage, webhooks))
    if webhooks is not None:
        hooks = webhooks
        limits.on_denied = lambda name, data: hooks.emit("limit.exceeded", data, urgent=False)
    key_admin.events, key_admin.webhooks = webhooks, webhooks.store
    key_admin.usage, key_admin.outbox = SqlUsageStore(database), webhooks.outbox
    for backend in backends:
        backend.on_state_change = webhooks.backend_changed
        backend.on_model_loaded = webhooks.model_loaded
    return Services(
        database=database,
        keyring=keyring,
        key_notices=key_notices,
        key_activity=key_activity,
        access=AccessControl(settings, authenticator, key_activity),
        key_admin=key_admin,
        settings=settings,
        backends=backends,
        fleet=fleet,
        fleet_routes=FleetRoutes(fleet),
        router=router,
        admin=AdminRoutes(
            fleet, router, settings.admin_token, key_admin, cache=cache, limits=limits
        ),
        cache=cache,
        limits=limits,
        cors=CorsPolicy(settings.cors_origins),
        ops=OpsRoutes(backends),
        metrics=metrics,
        access_log=access_log or AccessLog(),
        usage=usage,
        webhooks=webhooks,
        accounting=RequestAccounting(usage, webhooks),
    )


class App:
    """corral, assembled: start it, read its port, close it."""

    def __init__(
        self,
        settings: Settings,
        *,
        access_log: AccessLog | None = None,
        load: Callable[[], Settings] | None = None,
    ) -> None:
        self.settings = settings
        self.services = build_services(settings, access_log)
        if load is not None:  # reads the settings' sources again, for /config/reload
            self.services.key_admin.reloader = SettingsReloader(
                lambda: self.settings, load, self.reload
            )
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
        services = self.services
        # Before the database threads start: the descriptor table grows with a single thread.
        open_files = raise_open_file_limit()
        reserve_descriptor_table(RESERVED)
        if open_files < FEW_OPEN_FILES:
            log.warning(
                "the open-file limit is %d: corral can relay about %d streams at once;"
                " raise it (ulimit -n, or LimitNOFILE= in a systemd unit)",
                open_files,
                open_files // 2,
            )
        # Keys are in memory before the first request: auth never waits on the database.
        await services.database.start()
        await services.keyring.start()
        await services.key_notices.start(services.keyring.notify)
        services.key_activity.start()
        if services.usage is not None:
            services.usage.start()
        if services.webhooks is not None:
            await services.webhooks.pump()  # knows its subscribers before the first request
            services.webhooks.start()
        self.services.access_log.start()
        await self.server.start(self.settings.host, self.settings.port)
        # Learn which backends answer, and what they hold, before the first request needs it.
        await self.services.fleet.start()
        # Everything imported and built so far lives as long as the process: keep the cycle
        # collector from scanning it at every full collection (a 20 ms pause under 500 streams).
        gc.freeze()
        # A middle collection scans what survived the young collections since the last one: as
        # 500 streams open, every tenth young collection (the default) meant pauses of about
        # 3 ms, every second one about 1 ms, for the same work in all (the benchmark's (b) and
        # its instruction count). And full collections ten times rarer than the interpreter
        # makes them: after the freeze the old generation starts nearly empty, so its own brake
        # on them (a quarter more old objects since the last one) hardly ever holds, and under
        # load one came every tenth of a second, each a pause of milliseconds scanning every
        # open stream's objects. The relay breaks its reference cycles, so little garbage waits
        # for a full collection.
        young, _, _ = gc.get_threshold()
        gc.set_threshold(young, MIDDLE_COLLECTION_EVERY, FULL_COLLECTION_EVERY)

    async def reload(self, settings: Settings) -> None:
        """Apply new settings without dropping a request: the backend list (added ones are
        checked first, removed ones finish what they serve), queue bounds, strategy, CORS, the
        admin token, access control (settings keys, IP rules, trusted proxies), the cache's
        mode and TTL, and the limits. The listening address needs a restart."""
        services = self.services
        if (settings.host, settings.port) != (self.settings.host, self.settings.port):
            log.warning("host and port changes take effect at the next start")
        await services.fleet.reconcile(
            backend_specs(settings), lambda spec: make_backend(settings, spec)
        )
        if services.webhooks is not None:
            for backend in services.backends:
                backend.on_state_change = services.webhooks.backend_changed
                backend.on_model_loaded = services.webhooks.model_loaded
        router = services.router
        router.queue_size = settings.queue_size
        router.max_queue_wait = settings.max_queue_wait
        if settings.strategy != self.settings.strategy:
            router.balancer = make_balancer(
                settings.strategy, load_estimate=settings.model_load_estimate
            )
        services.cors = CorsPolicy(settings.cors_origins)
        services.admin.admin_token = settings.admin_token
        services.access.reconfigure(settings)
        services.keyring.interval = settings.auth.refresh_interval
        services.cache.configure(
            settings.cache_mode, settings.cache_ttl, settings.cache_max_entry_size
        )
        services.limits.configure(settings.limits)
        services.settings = self.settings = settings

    async def aclose(self) -> None:
        """Stop order: stop accepting, finish in-flight requests, close upstreams, flush logs."""
        await self.server.aclose()
        await self.services.cache.aclose()  # after the last answer was kept
        await self.services.limits.aclose()  # after the last answer was settled
        await self.services.fleet.aclose()
        services = self.services
        await services.key_notices.aclose()
        await services.keyring.aclose()
        await services.key_activity.aclose()  # writes the last counters
        if services.usage is not None:
            await services.usage.aclose()  # writes the last usage records
        if services.webhooks is not None:
            await services.webhooks.aclose()  # keeps queued events in the outbox
        await services.database.aclose()
        await self.services.access_log.aclose()


async def serve(settings: Settings, reload: Callable[[], Settings] | None = None) -> None:
    """Run corral until SIGINT or SIGTERM; on SIGHUP, ``reload()`` new settings and apply them."""
    handler = configure_logging(
        settings.log_level,
        log_file=settings.log_file,
        max_bytes=settings.log_max_bytes,
        backups=settings.log_backups,
    )
    app = App(settings, access_log=AccessLog(write=raw_writer(handler)), load=reload)
    try:
        await app.start()
    except DatabaseUnavailable as err:
        log.error("%s", err)  # the keys are not readable: refusing to start is the safe answer
        raise SystemExit(1) from None
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
    reloading: set[asyncio.Task[None]] = set()
    reloader = app.services.key_admin.reloader
    if reloader is not None:
        # The same reload as /admin/reload: it logs what it applied and what needs a restart.
        async def apply() -> None:
            try:
                await reloader.reload()
            except SettingsError as err:
                log.error("reload refused, settings unchanged: %s", "; ".join(err.problems))

        def on_hangup() -> None:
            task = loop.create_task(apply())
            reloading.add(task)
            task.add_done_callback(reloading.discard)

        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signal.SIGHUP, on_hangup)
    try:
        await stop.wait()
    finally:
        log.info("corral shutting down")
        await app.aclose()
