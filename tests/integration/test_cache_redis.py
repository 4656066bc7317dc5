"""The response cache in Redis: shared by corral instances, and never a cause of failure.

Redis runs at ``TEST_REDIS_URL`` (default 127.0.0.1:6379); each test uses a key prefix of its own,
deleted after it. Without Redis the sharing test is skipped, or fails under ``CI=true``.
"""

from __future__ import annotations

import asyncio

import httpx

from corral.testing.simulator import Simulator
from tests.harness import running_corral
from tests.integration.test_cache_gateway import CHAT, TIMEOUT, eventually
from tests.stores.backing import RedisSpace


async def test_instances_sharing_redis_share_the_cache(
    sim: Simulator, redis_space: RedisSpace
) -> None:
    shared = {"redis_url": redis_space.url, "redis_prefix": redis_space.prefix}
    body = {**CHAT, "stream": False}
    async with running_corral([sim.url], **shared) as (one, _), running_corral([sim.url], **shared) as (two, _):
        async with httpx.AsyncClient(timeout=TIMEOUT) as client:
            first = await client.post(one.url + "/api/chat", json=body)
            await eventually(lambda: len(one.services.cache._writes) == 0)
            second = await client.post(two.url + "/api/chat", json=body)
            assert first.headers["x-corral-cache"] == "miss"
            assert second.headers["x-corral-cache"] == "hit"
            assert second.content == first.content
            stats = (await client.get(two.url + "/admin/cache")).json()
            assert stats["backend"] == "redis" and stats["entries"] == 1
            # /metrics reads a remote store's size measured in the background.
            await client.get(one.url + "/metrics")
            await eventually(lambda: one.services.cache.report().store is not None)
            assert "ollama_cache_size 1.0" in (await client.get(one.url + "/metrics")).text
            assert (await client.delete(one.url + "/admin/cache")).json() == {"cleared": 1}
            assert (await client.post(two.url + "/api/chat", json=body)).headers["x-corral-cache"] == "miss"
    assert sim.stats.requests["/api/chat"] == 2


async def test_an_unreachable_redis_leaves_requests_uncached_not_failed(sim: Simulator) -> None:
    closed = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = closed.sockets[0].getsockname()[1]
    closed.close()
    await closed.wait_closed()
    async with running_corral([sim.url], redis_url=f"redis://127.0.0.1:{port}/0") as (app, _):
        async with httpx.AsyncClient(base_url=app.url, timeout=TIMEOUT) as client:
            for _ in range(2):
                answer = await client.post("/api/chat", json={**CHAT, "stream": False})
                assert answer.status_code == 200
                assert answer.headers["x-corral-cache"] == "miss"
            assert (await client.get("/admin/cache")).status_code == 503
        await eventually(lambda: app.services.cache.counters.errors >= 3)
    assert sim.stats.requests["/api/chat"] == 2
