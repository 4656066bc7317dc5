"""A client that goes away stops the work upstream at once: Ollama learns it from the closed
connection, so corral must close it within 100 ms, whatever stage the request was in."""

from __future__ import annotations

import asyncio

import orjson

from corral.testing.simulator import Simulator
from tests.harness import running_corral
from tests.integration.conftest import StartSim
from tests.rawhttp import RawClient

LIMIT = 0.1


def post(path: str, payload: dict[str, object]) -> bytes:
    body = orjson.dumps(payload)
    return (
        b"POST %b HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%b"
        % (
            path.encode(),
            len(body),
            body,
        )
    )


async def leave_and_time(client: RawClient, sim: Simulator) -> float:
    """Close the client's socket; return how long until the simulator saw its request cancelled."""
    loop = asyncio.get_running_loop()
    client.writer.transport.abort()
    left_at = loop.time()
    record = await sim.stats.wait_cancelled(timeout=5)
    assert record.finished_at is not None
    return record.finished_at - left_at


async def test_leaving_before_the_first_token_cancels_upstream(start_sim: StartSim) -> None:
    sim = await start_sim(first_token_delay=30.0)
    async with running_corral([sim.url]) as (app, log):
        async with RawClient(app.port) as client:
            await client.send(
                post(
                    "/api/chat",
                    {"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}]},
                )
            )
            await sim.stats.wait_started()
            assert await leave_and_time(client, sim) < LIMIT
        await sim.stats.wait_idle()
        assert app.services.backends[0].in_flight == 0
        assert any(e["status"] == 499 for e in log.entries)


async def test_leaving_mid_stream_cancels_upstream(start_sim: StartSim) -> None:
    sim = await start_sim(tokens_per_second=20.0)
    async with running_corral([sim.url]) as (app, log):
        async with RawClient(app.port) as client:
            await client.send(
                post(
                    "/api/generate",
                    {"model": "llama3.2", "prompt": "count", "options": {"num_predict": 1000}},
                )
            )
            await client.reader.readuntil(b"\r\n\r\n")
            await client.reader.readuntil(b"\r\n")  # chunk size
            await client.reader.readuntil(b"\r\n")  # the first NDJSON line has arrived
            assert await leave_and_time(client, sim) < LIMIT
        await sim.stats.wait_idle()
        assert app.services.backends[0].in_flight == 0
        assert any(e["status"] == 499 for e in log.entries)


async def test_leaving_while_a_non_streaming_answer_is_generated(start_sim: StartSim) -> None:
    sim = await start_sim(tokens_per_second=10.0)
    async with running_corral([sim.url]) as (app, _):
        async with RawClient(app.port) as client:
            await client.send(
                post(
                    "/api/chat",
                    {
                        "model": "llama3.2",
                        "stream": False,
                        "messages": [{"role": "user", "content": "hi"}],
                        "options": {"num_predict": 500},
                    },
                )
            )
            await sim.stats.wait_started()
            assert await leave_and_time(client, sim) < LIMIT
        await sim.stats.wait_idle()
        assert app.services.backends[0].in_flight == 0


async def test_leaving_the_queue_frees_the_place_and_never_reaches_ollama(
    start_sim: StartSim,
) -> None:
    sim = await start_sim(first_token_delay=30.0)
    async with running_corral([sim.url], max_concurrency=1) as (app, log):
        async with RawClient(app.port) as first, RawClient(app.port) as second:
            await first.send(
                post(
                    "/api/chat",
                    {"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}]},
                )
            )
            await sim.stats.wait_started()
            await second.send(
                post(
                    "/api/chat",
                    {"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}]},
                )
            )
            while app.services.router.queued < 1:
                await asyncio.sleep(0.005)
            second.writer.transport.abort()
            while app.services.router.queued > 0:
                await asyncio.sleep(0.005)
            assert sim.stats.started == 1
        await sim.stats.wait_idle()
        assert app.services.backends[0].in_flight == 0
        assert sum(1 for e in log.entries if e["status"] == 499) == 2
