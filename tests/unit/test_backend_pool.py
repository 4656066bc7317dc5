"""A backend keeps as many idle upstream connections as it has request slots, and a few more."""

from __future__ import annotations

from corral.backends.backend import SPARE_CONNECTIONS, Backend, BackendSpec


async def test_idle_connections_follow_the_request_slots() -> None:
    backend = Backend(BackendSpec("gpu1", "127.0.0.1", 1, max_concurrency=500))
    # 500 streams at once: after the first burst, the next one finds 500 connections ready.
    assert backend.pool.max_idle == 500 + SPARE_CONNECTIONS
    backend.resize(2)  # a reload that lowers the backend's slots
    assert (backend.max_concurrency, backend.pool.max_idle) == (2, 2 + SPARE_CONNECTIONS)
