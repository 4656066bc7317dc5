"""corral in front of two and three simulators: spreading, preferring the idle, skipping the
dead, failing over from a busy server before the first byte, and relaying failures after it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest

from corral.testing.simulator import Simulator
from tests.harness import running_corral
from tests.integration.conftest import StartSim
from tests.integration.test_gateway_support import cancel_all, ndjson, sse_data, until

TIMEOUT = 30.0
CHAT = {
    "model": "llama3.2",
    "messages": [{"role": "user", "content": "Why is the sky blue?"}],
    "stream": False,
}
MODEL_ERROR = b'{"error":"an error was encountered while running the model"}'


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=TIMEOUT) as c:
        yield c


def chats(sims: list[Simulator]) -> list[int]:
    return [s.stats.requests["/api/chat"] for s in sims]


# ---- spreading the load ---------------------------------------------------------------------


@pytest.mark.parametrize("size", [2, 3])
async def test_round_robin_spreads_requests_evenly(
    start_sim: StartSim, client: httpx.AsyncClient, size: int
) -> None:
    sims = [await start_sim() for _ in range(size)]
    async with running_corral([s.url for s in sims], strategy="round_robin") as (app, _):
        for _ in range(3 * size):
            r = await client.post(app.url + "/api/chat", json=CHAT)
            assert r.status_code == 200
            assert r.json()["done"] is True
    assert chats(sims) == [3] * size
    assert [s.stats.completed for s in sims] == [3] * size


async def test_round_robin_answers_are_the_same_whichever_backend(
    start_sim: StartSim, client: httpx.AsyncClient
) -> None:
    sims = [await start_sim() for _ in range(2)]
    async with running_corral([s.url for s in sims], strategy="round_robin") as (app, _):
        answers = [(await client.post(app.url + "/api/chat", json=CHAT)).json() for _ in range(4)]
    assert chats(sims) == [2, 2]
    assert len({a["message"]["content"] for a in answers}) == 1


async def test_least_busy_prefers_the_idle_backend(
    start_sim: StartSim, client: httpx.AsyncClient
) -> None:
    sims = [await start_sim(tokens_per_second=20.0) for _ in range(2)]
    hog = {**CHAT, "options": {"num_predict": 100_000}}
    quick = {**CHAT, "options": {"num_predict": 1}}
    tasks: list[asyncio.Task[Any]] = []
    async with running_corral(
        [s.url for s in sims], strategy="least_busy", max_concurrency=2
    ) as (app, _):
        try:
            tasks.append(asyncio.create_task(client.post(app.url + "/api/chat", json=hog)))
            await until(lambda: sum(s.stats.active for s in sims) == 1, what="the long request")
            busy = next(s for s in sims if s.stats.active == 1)
            idle = next(s for s in sims if s is not busy)
            for _ in range(6):
                r = await client.post(app.url + "/api/chat", json=quick)
                assert r.status_code == 200
                assert r.json()["eval_count"] == 1
            assert idle.stats.requests["/api/chat"] == 6
            assert busy.stats.requests["/api/chat"] == 1
            assert busy.stats.active == 1
        finally:
            await cancel_all(tasks)


# ---- backends that are not there ------------------------------------------------------------


async def test_a_backend_refusing_from_the_start_is_skipped(
    start_sim: StartSim, client: httpx.AsyncClient
) -> None:
    sims = [await start_sim() for _ in range(3)]
    dead = sims[1]
    await dead.refuse_connections()
    async with running_corral([s.url for s in sims], strategy="round_robin") as (app, _):
        for _ in range(6):
            r = await client.post(app.url + "/api/chat", json=CHAT)
            assert r.status_code == 200
        states = {b.url: b.state.value for b in app.services.backends}
    assert [sims[0].stats.completed, sims[2].stats.completed] == [3, 3]
    assert dead.stats.requests["/api/chat"] == 0
    assert states[dead.url] == "down"


async def test_a_backend_that_dies_is_skipped_and_requests_still_succeed(
    start_sim: StartSim, client: httpx.AsyncClient
) -> None:
    sims = [await start_sim() for _ in range(2)]
    async with running_corral([s.url for s in sims], strategy="round_robin") as (app, _):
        assert all(b.state.value == "up" for b in app.services.backends)
        await sims[0].refuse_connections()
        for _ in range(6):
            r = await client.post(app.url + "/api/chat", json=CHAT)
            assert r.status_code == 200
            assert r.json()["done"] is True
        streamed = await client.post(app.url + "/api/chat", json={**CHAT, "stream": True})
        assert streamed.status_code == 200
        assert ndjson(streamed.content)[-1]["done"] is True
        states = [b.state.value for b in app.services.backends]
    assert sims[0].stats.requests["/api/chat"] == 0
    assert sims[1].stats.completed == 7
    assert states == ["down", "up"]


async def test_a_backend_that_comes_back_is_used_again(
    start_sim: StartSim, client: httpx.AsyncClient
) -> None:
    sims = [await start_sim() for _ in range(2)]
    await sims[0].refuse_connections()
    settings = {"strategy": "round_robin", "health_interval": 0.1}
    async with running_corral([s.url for s in sims], **settings) as (app, _):
        assert (await client.post(app.url + "/api/chat", json=CHAT)).status_code == 200
        assert sims[0].stats.requests["/api/chat"] == 0
        await sims[0].accept_connections()

        async def served_by_both() -> bool:
            r = await client.post(app.url + "/api/chat", json=CHAT)
            assert r.status_code == 200
            return sims[0].stats.completed > 0

        async with asyncio.timeout(20):
            while not await served_by_both():
                await asyncio.sleep(0.05)


async def test_every_backend_refusing_is_an_error(
    client: httpx.AsyncClient, start_sim: StartSim
) -> None:
    sims = [await start_sim() for _ in range(2)]
    async with running_corral([s.url for s in sims], strategy="round_robin") as (app, _):
        for sim in sims:
            await sim.refuse_connections()
        r = await client.post(app.url + "/api/chat", json=CHAT)
        assert r.status_code in (502, 503)
        assert set(r.json()) == {"error"}


# ---- a busy backend -------------------------------------------------------------------------


async def test_a_busy_backend_fails_over_to_the_other(
    start_sim: StartSim, client: httpx.AsyncClient
) -> None:
    busy, free = await start_sim(), await start_sim()
    busy.faults.update({"busy": True})
    async with running_corral([busy.url, free.url], strategy="round_robin") as (app, _):
        for _ in range(4):
            r = await client.post(app.url + "/api/chat", json=CHAT)
            assert r.status_code == 200
            assert r.json()["message"]["content"]
        streamed = await client.post(
            app.url + "/api/generate", json={"model": "llama3.2", "prompt": "hi"}
        )
        assert streamed.status_code == 200
        assert ndjson(streamed.content)[-1]["done"] is True
    assert busy.stats.requests["/api/chat"] >= 1  # it was asked, and said it was busy
    assert busy.stats.completed == 0
    assert free.stats.completed == 5


async def test_when_every_backend_is_busy_ollamas_503_is_relayed(
    start_sim: StartSim, client: httpx.AsyncClient
) -> None:
    sims = [await start_sim() for _ in range(2)]
    for sim in sims:
        sim.faults.update({"busy": True})
    expected = await client.post(sims[0].url + "/api/chat", json=CHAT)
    async with running_corral([s.url for s in sims], strategy="round_robin") as (app, _):
        r = await client.post(app.url + "/api/chat", json=CHAT)
    assert r.status_code == expected.status_code == 503
    assert r.content == expected.content
    assert b"server busy" in r.content


# ---- failures after the first byte ----------------------------------------------------------


async def test_an_error_mid_stream_ends_with_ollamas_error_line(
    start_sim: StartSim, client: httpx.AsyncClient
) -> None:
    sims = [await start_sim() for _ in range(2)]
    for sim in sims:
        sim.faults.update({"error_after_chunks": 3})
    direct = await client.post(sims[0].url + "/api/chat", json={**CHAT, "stream": True})
    async with running_corral([s.url for s in sims], strategy="round_robin") as (app, log):
        r = await client.post(app.url + "/api/chat", json={**CHAT, "stream": True})
    assert r.status_code == direct.status_code == 200
    lines = r.content.splitlines()
    assert len(lines) == 4
    assert [orjson.loads(line)["done"] for line in lines[:3]] == [False] * 3
    assert lines[-1] == direct.content.splitlines()[-1] == MODEL_ERROR
    # The stream had begun: no other backend was asked.
    assert sum(chats(sims)) == 2  # the direct request and the relayed one


async def test_an_error_mid_sse_stream_is_relayed_as_a_data_event(
    start_sim: StartSim, client: httpx.AsyncClient
) -> None:
    sims = [await start_sim() for _ in range(2)]
    for sim in sims:
        sim.faults.update({"error_after_chunks": 2})
    body = {**CHAT, "stream": True}
    async with running_corral([s.url for s in sims], strategy="round_robin") as (app, _):
        r = await client.post(app.url + "/v1/chat/completions", json=body)
    assert r.status_code == 200
    events = sse_data(r.content)
    assert len(events) == 3
    assert events[-1]["error"]["message"] == "an error was encountered while running the model"
    assert sum(s.stats.requests["/v1/chat/completions"] for s in sims) == 1


async def test_a_dropped_stream_ends_with_an_error_line(
    start_sim: StartSim, client: httpx.AsyncClient
) -> None:
    sims = [await start_sim() for _ in range(2)]
    for sim in sims:
        sim.faults.update({"drop_after_chunks": 2})
    async with running_corral([s.url for s in sims], strategy="round_robin") as (app, _):
        r = await client.post(
            app.url + "/api/generate", json={"model": "llama3.2", "prompt": "hi"}
        )
    assert r.status_code == 200
    parts = ndjson(r.content)
    assert [p.get("done") for p in parts[:2]] == [False, False]
    assert set(parts[-1]) == {"error"}
    assert len(parts) == 3
    assert sum(s.stats.requests["/api/generate"] for s in sims) == 1


async def test_a_server_error_is_relayed_unchanged(
    start_sim: StartSim, client: httpx.AsyncClient
) -> None:
    sims = [await start_sim() for _ in range(2)]
    for sim in sims:
        sim.faults.update({"status_500": True})
    expected = await client.post(sims[0].url + "/api/chat", json=CHAT)
    expected_v1 = await client.post(sims[0].url + "/v1/chat/completions", json=CHAT)
    async with running_corral([s.url for s in sims], strategy="round_robin") as (app, _):
        r = await client.post(app.url + "/api/chat", json=CHAT)
        r_v1 = await client.post(app.url + "/v1/chat/completions", json=CHAT)
    assert r.status_code == expected.status_code == 500
    assert r.content == expected.content
    assert r.headers["content-type"] == expected.headers["content-type"]
    assert r_v1.status_code == 500
    assert r_v1.content == expected_v1.content
    # A 500 is Ollama's answer, not a transport failure: relayed, not retried elsewhere.
    assert sum(chats(sims)) == 2
    assert sum(s.stats.requests["/v1/chat/completions"] for s in sims) == 2


# ---- what counts against a backend ---------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "payload"),
    [
        ("POST", "/api/chat", {"model": "llama3.2", "messages": "not a list"}),
        ("POST", "/api/generate", {"model": "llama3.2", "prompt": "hi", "think": "very"}),
        ("GET", "/v1/models/no-such-model", None),
    ],
)
async def test_client_errors_relayed_from_ollama_do_not_take_the_backend_out(
    start_sim: StartSim, client: httpx.AsyncClient, method: str, path: str, payload: Any
) -> None:
    sim = await start_sim()
    content = orjson.dumps(payload) if payload is not None else None
    expected = await client.request(method, sim.url + path, content=content)
    assert 400 <= expected.status_code < 500
    async with running_corral([sim.url]) as (app, _):
        for _ in range(5):
            r = await client.request(method, app.url + path, content=content)
            assert r.status_code == expected.status_code
            assert r.content == expected.content
        r = await client.post(app.url + "/api/chat", json=CHAT)
        assert r.status_code == 200
