"""One Ollama server as corral sees it: where it is, how busy it is, whether it answers, which
models it has and which it holds in memory."""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from corral.backends.breaker import CircuitBreaker
from corral.backends.models import LoadedModel, parse_ps, parse_tags
from corral.backends.upstream import UpstreamFailure, UpstreamPool

log = logging.getLogger("corral.backends")


# Idle upstream connections kept beyond one per request slot.
SPARE_CONNECTIONS = 8


class BackendState(enum.StrEnum):
    UNKNOWN = "unknown"
    UP = "up"
    DOWN = "down"


@dataclass(frozen=True, slots=True)
class BackendSpec:
    """Where a backend is and how much it may take at once."""

    name: str
    host: str
    port: int
    max_concurrency: int = 4

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


class Backend:
    """A backend's connection pool, live counters and model state.

    ``in_flight`` is kept by the router's leases. ``state`` comes from active probes; the
    ``breaker`` from real traffic. ``models`` and ``loaded`` from ``/api/tags`` and ``/api/ps``,
    and from what responses reveal in between (a finished generation means the model is loaded).

    >>> b = Backend(BackendSpec("gpu1", "127.0.0.1", 11434))
    >>> b.free_slots
    4
    """

    def __init__(
        self,
        spec: BackendSpec,
        *,
        connect_timeout: float = 5.0,
        read_timeout: float = 300.0,
        breaker: CircuitBreaker | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.spec = spec
        self.name = spec.name
        self.url = spec.url
        self.pool = UpstreamPool(
            spec.host, spec.port, connect_timeout=connect_timeout, read_timeout=read_timeout
        )
        self.max_concurrency = 0
        self.resize(spec.max_concurrency)
        self.breaker = breaker or CircuitBreaker(clock=clock)
        self._clock = clock
        self.in_flight = 0
        self.queued = 0
        self.state = BackendState.UNKNOWN
        self.draining = False
        self.last_error: str | None = None
        self.version: str | None = None
        # normalised model name -> digest; None until the first /api/tags answer
        self.models: dict[str, str] | None = None
        self.loaded: dict[str, LoadedModel] = {}
        # seconds per request, smoothed; and learned load time per model
        self.latency: float | None = None
        self.load_seconds: dict[str, float] = {}
        self.on_state_change: Callable[[Backend, str], None] | None = None
        # Told the model's name when a response shows a model newly loaded here.
        self.on_model_loaded: Callable[[Backend, str], None] | None = None

    def resize(self, max_concurrency: int) -> None:
        """Admit ``max_concurrency`` requests at once, and keep as many idle connections (and a
        few more, for fleet calls and health checks): a request that gets a slot then finds a
        connection ready instead of waiting for a new one's handshake."""
        self.max_concurrency = max_concurrency
        self.pool.max_idle = max_concurrency + SPARE_CONNECTIONS

    @property
    def free_slots(self) -> int:
        return self.max_concurrency - self.in_flight

    @property
    def usable(self) -> bool:
        """May new requests be sent here?"""
        return not self.draining and self.state is not BackendState.DOWN and self.breaker.allows()

    @property
    def status(self) -> str:
        """One word for people: draining, down, open (circuit), half_open, up or unknown."""
        if self.draining:
            return "draining"
        if self.state is BackendState.DOWN:
            return "down"
        if self.breaker.state != "closed":
            return self.breaker.state
        return self.state.value

    def has_model(self, model: str) -> bool | None:
        """True/False from the last /api/tags; None while unknown."""
        return None if self.models is None else model in self.models

    def is_warm(self, model: str, num_ctx: int | None) -> bool:
        """Loaded, not about to expire, and (when asked for) with the same context length:
        a different num_ctx makes Ollama reload the model."""
        entry = self.loaded.get(model)
        if entry is None:
            return False
        if entry.expires_at is not None and entry.expires_at < time.time():
            return False
        return num_ctx is None or entry.context_length is None or entry.context_length == num_ctx

    # ---- state changes, logged once each ----------------------------------------------------

    def mark_up(self) -> None:
        if self.state is not BackendState.UP:
            previous = self.state
            self.state = BackendState.UP
            self.last_error = None
            if previous is BackendState.DOWN:
                log.info("backend %s is up again", self.name)
                self._changed("up")

    def mark_down(self, reason: str) -> None:
        self.last_error = reason
        if self.state is not BackendState.DOWN:
            log.warning("backend %s is down: %s", self.name, reason)
            self.state = BackendState.DOWN
            self._changed("down")

    def record_success(self, seconds: float | None = None) -> None:
        if seconds is not None:
            self.latency = seconds if self.latency is None else 0.8 * self.latency + 0.2 * seconds
        if self.breaker.record_success():
            log.info("backend %s: circuit closed", self.name)
            self._changed("up")

    def record_failure(self, reason: str) -> None:
        self.last_error = reason
        if self.breaker.record_failure():
            log.warning(
                "backend %s: circuit open for %gs after %d failures: %s",
                self.name,
                self.breaker.cooldown,
                self.breaker.failures,
                reason,
            )
            self._changed("down")

    def _changed(self, event: str) -> None:
        if self.on_state_change is not None:
            self.on_state_change(self, event)

    # ---- what responses teach us -----------------------------------------------------------

    def learn(
        self, model: str, load_seconds: float | None, num_ctx: int | None, keep_alive: float
    ) -> None:
        """A generation or embedding finished here: the model is now loaded, and if Ollama had
        to load it, its ``load_duration`` says how long that took."""
        if keep_alive == 0:
            self.loaded.pop(model, None)
        else:
            self.saw_model_loaded(model, load_seconds, num_ctx, keep_alive)

    def saw_model_loaded(
        self, model: str, load_seconds: float | None, num_ctx: int | None, keep_alive: float
    ) -> None:
        if load_seconds is not None and load_seconds > 0.05:
            old = self.load_seconds.get(model)
            self.load_seconds[model] = (
                load_seconds if old is None else 0.5 * old + 0.5 * load_seconds
            )
        previous = self.loaded.get(model)
        expires = time.time() + keep_alive if keep_alive >= 0 else None
        if previous is not None and (num_ctx is None or previous.context_length == num_ctx):
            previous.expires_at = expires  # the common case: a warm model stays warm
            return
        context = num_ctx or (previous.context_length if previous else None)
        self.loaded[model] = LoadedModel(model, expires, context)
        if previous is None and self.on_model_loaded is not None:
            self.on_model_loaded(self, model)

    # ---- active probing --------------------------------------------------------------------

    async def probe(self, timeout: float = 2.0) -> bool:  # noqa: ASYNC109
        """``GET /api/version``: is the server there and speaking Ollama?"""
        try:
            async with asyncio.timeout(timeout):
                status, body = await self.get_json(b"/api/version")
        except (UpstreamFailure, TimeoutError) as err:
            self.mark_down(str(err) or "probe timed out")
            return False
        if status != 200 or not isinstance(body, dict):
            self.mark_down(f"/api/version answered {status}")
            return False
        self.version = str(body.get("version"))
        self.mark_up()
        return True

    async def refresh_models(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """Read ``/api/tags`` and ``/api/ps``; on failure keep what we knew."""
        try:
            async with asyncio.timeout(timeout):
                tags_status, tags = await self.get_json(b"/api/tags")
                ps_status, ps = await self.get_json(b"/api/ps")
        except (UpstreamFailure, TimeoutError) as err:
            log.debug("backend %s: model refresh failed: %s", self.name, err)
            return
        models = parse_tags(tags) if tags_status == 200 else None
        if models is not None:
            self.models = models
        if ps_status == 200:
            self.loaded = parse_ps(ps)

    async def get_json(self, path: bytes, limit: int = 16 * 1024 * 1024) -> tuple[int, Any]:
        response = await self.pool.request(b"GET", path, [])
        body = await response.read(limit=limit)
        try:
            return response.status, orjson.loads(body) if body else None
        except orjson.JSONDecodeError:
            return response.status, None

    def snapshot(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "url": self.url,
            "state": self.status,
            "in_flight": self.in_flight,
            "queued": self.queued,
            "max_concurrency": self.max_concurrency,
            "version": self.version,
            "models": sorted(self.models) if self.models is not None else None,
            "loaded": [
                {"name": m.name, "context_length": m.context_length, "expires_at": m.expires_at}
                for m in self.loaded.values()
            ],
            "latency_ms": round(self.latency * 1000, 1) if self.latency is not None else None,
            "last_error": self.last_error,
        }

    async def aclose(self) -> None:
        await self.pool.aclose()
