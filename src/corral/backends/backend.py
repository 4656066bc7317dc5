"""One Ollama server as corral sees it: where it is, how busy it is, whether it answers."""

from __future__ import annotations

import asyncio
import enum
import logging
from dataclasses import dataclass
from typing import Any

import orjson

from corral.backends.upstream import UpstreamFailure, UpstreamPool

log = logging.getLogger("corral.backends")


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
    """A backend's connection pool and live counters.

    ``in_flight`` is maintained by the router's leases; ``state`` by probes and by what real
    traffic sees (a refused connection marks it down until it answers again).

    >>> b = Backend(BackendSpec("gpu1", "127.0.0.1", 11434))
    >>> b.free_slots
    4
    """

    def __init__(
        self, spec: BackendSpec, *, connect_timeout: float = 5.0, read_timeout: float = 300.0
    ) -> None:
        self.spec = spec
        self.name = spec.name
        self.url = spec.url
        self.max_concurrency = spec.max_concurrency
        self.pool = UpstreamPool(
            spec.host, spec.port, connect_timeout=connect_timeout, read_timeout=read_timeout
        )
        self.in_flight = 0
        self.state = BackendState.UNKNOWN
        self.last_error: str | None = None
        self.version: str | None = None

    @property
    def free_slots(self) -> int:
        return self.max_concurrency - self.in_flight

    @property
    def usable(self) -> bool:
        return self.state is not BackendState.DOWN

    def mark_up(self) -> None:
        if self.state is not BackendState.UP:
            if self.state is BackendState.DOWN:
                log.info("backend %s is up again", self.name)
            self.state = BackendState.UP
            self.last_error = None

    def mark_down(self, reason: str) -> None:
        self.last_error = reason
        if self.state is not BackendState.DOWN:
            log.warning("backend %s is down: %s", self.name, reason)
            self.state = BackendState.DOWN

    async def probe(self, timeout: float = 2.0) -> bool:  # noqa: ASYNC109
        """``GET /api/version``: is the server there and speaking Ollama?"""
        try:
            async with asyncio.timeout(timeout):
                response = await self.pool.request(b"GET", b"/api/version", [])
                body = await response.read(limit=64 * 1024)
        except (UpstreamFailure, TimeoutError) as err:
            self.mark_down(str(err) or "probe timed out")
            return False
        if response.status != 200:
            self.mark_down(f"/api/version answered {response.status}")
            return False
        try:
            self.version = str(orjson.loads(body).get("version"))
        except (ValueError, AttributeError):
            self.version = None
        self.mark_up()
        return True

    def snapshot(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "url": self.url,
            "state": self.state.value,
            "in_flight": self.in_flight,
            "max_concurrency": self.max_concurrency,
            "version": self.version,
            "last_error": self.last_error,
        }

    async def aclose(self) -> None:
        await self.pool.aclose()
