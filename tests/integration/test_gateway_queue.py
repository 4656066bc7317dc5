"""The queue's bounds, seen over HTTP: a full queue and an expired wait are answered 503 with
``Retry-After`` by corral itself, and never reach a backend."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from corral.app import App
from corral.testing.simulator import Simulator
from tests.harness import running_corral
from tests.integration.conftest import StartSim
from tests.integration.test_gateway_support import cancel_all, until

TIMEOUT = 30.0
CHAT = {
    "model": "llama3.2",
    "messages": [{"role": "user", "content": "hi"}],
    "stream": False,
}


@pytest.fixture
async def slow_sim(start_sim: StartSim) -> Simulator:
    """Every generation waits a minute for its first token: a slot, once taken, stays taken."""
    return await start_sim(first_token_delay=60.0)


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=TIMEOUT) as c:
        yield c


async def occupy(
    app: App, sim: Simulator, client: httpx.AsyncClient, tasks: list[asyncio.Task[Any]]
) -> None:
    """Start a request that holds corral's only slot until it is cancelled."""
    started = sim.stats.started
    tasks.append(asyncio.create_task(client.post(app.url + "/api/chat", json=CHAT)))
    await until(lambda: sim.stats.started > started, what="the first request to reach the sim")
    await until(lambda: app.services.backends[0].in_flight == 1, what="the slot to be taken")


def retry_after(response: httpx.Response) -> int:
    value = int(response.headers["retry-after"])
    assert value >= 1
    return value


async def test_full_queue_is_503_with_retry_after(
    slow_sim: Simulator, client: httpx.AsyncClient
) -> None:
    tasks: list[asyncio.Task[Any]] = []
    async with running_corral([slow_sim.url], max_concurrency=1, queue_size=1) as (app, log):
        try:
            await occupy(app, slow_sim, client, tasks)
            tasks.append(asyncio.create_task(client.post(app.url + "/api/chat", json=CHAT)))
            await until(lambda: app.services.router.queued == 1, what="a request in the queue")

            third = await client.post(app.url + "/api/chat", json=CHAT)
            assert third.status_code == 503
            retry_after(third)
            body = third.json()
            assert set(body) == {"error"}
            assert "queue" in body["error"]

            openai_side = await client.post(app.url + "/v1/chat/completions", json=CHAT)
            assert openai_side.status_code == 503
            retry_after(openai_side)
            error = openai_side.json()["error"]
            assert set(error) == {"message", "type", "param", "code"}
            assert "queue" in error["message"]

            # Still one generation: the queued request waits, the rejected ones never went.
            assert slow_sim.stats.started == 1
            assert slow_sim.stats.requests["/api/chat"] == 1
            assert slow_sim.stats.requests["/v1/chat/completions"] == 0
            assert app.services.router.queued == 1
        finally:
            await cancel_all(tasks)
        await until(lambda: app.services.router.queued == 0, what="the queue to empty")
        await until(lambda: app.services.backends[0].in_flight == 0, what="the slot to free")
    assert [e["status"] for e in log.entries if e["status"] == 503] == [503, 503]


async def test_queue_wait_expires_with_503(slow_sim: Simulator, client: httpx.AsyncClient) -> None:
    tasks: list[asyncio.Task[Any]] = []
    settings = {"max_concurrency": 1, "queue_size": 4, "max_queue_wait": 0.2}
    async with running_corral([slow_sim.url], **settings) as (app, _):
        try:
            await occupy(app, slow_sim, client, tasks)
            began = time.monotonic()
            r = await client.post(app.url + "/api/chat", json=CHAT)
            waited = time.monotonic() - began
            assert r.status_code == 503
            retry_after(r)
            assert set(r.json()) == {"error"}
            assert waited >= 0.19
            assert slow_sim.stats.started == 1
            assert slow_sim.stats.requests["/api/chat"] == 1
            assert app.services.router.queued == 0
        finally:
            await cancel_all(tasks)


async def test_a_queued_request_is_served_when_the_slot_frees(
    start_sim: StartSim, client: httpx.AsyncClient
) -> None:
    sim = await start_sim(tokens_per_second=20.0)
    long = {**CHAT, "options": {"num_predict": 2000}}
    short = {**CHAT, "options": {"num_predict": 2}}
    tasks: list[asyncio.Task[Any]] = []
    async with running_corral([sim.url], max_concurrency=1, queue_size=4) as (app, _):
        try:
            tasks.append(asyncio.create_task(client.post(app.url + "/api/chat", json=long)))
            await until(lambda: sim.stats.started == 1, what="the long request to start")
            queued = asyncio.create_task(client.post(app.url + "/api/chat", json=short))
            tasks.append(queued)
            await until(lambda: app.services.router.queued == 1, what="a request in the queue")
            assert not queued.done()
            assert sim.stats.started == 1
            tasks[0].cancel()
            r = await queued
            assert r.status_code == 200
            assert r.json()["eval_count"] == 2
            assert sim.stats.started == 2
        finally:
            await cancel_all(tasks)


async def test_queue_size_zero_rejects_at_once_when_busy(
    slow_sim: Simulator, client: httpx.AsyncClient
) -> None:
    tasks: list[asyncio.Task[Any]] = []
    async with running_corral([slow_sim.url], max_concurrency=1, queue_size=0) as (app, _):
        try:
            await occupy(app, slow_sim, client, tasks)
            r = await client.post(app.url + "/api/generate", json={"model": "llama3.2"})
            assert r.status_code == 503
            retry_after(r)
            assert slow_sim.stats.requests["/api/generate"] == 0
        finally:
            await cancel_all(tasks)
