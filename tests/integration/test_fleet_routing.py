"""corral knows the fleet: health, model-aware and warm routing, failover, draining."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable

import httpx
import orjson
from click.testing import CliRunner

from corral.cli.main import main
from corral.settings import BackendSettings
from corral.testing.simulator import Simulator
from tests.harness import running_corral
from tests.integration.conftest import StartSim

CHAT = {"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}], "stream": False}


def generations(sim: Simulator) -> int:
    return sim.stats.requests["/api/chat"]


async def until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:  # noqa: ASYNC109
    """Readiness polling: re-check a condition until it holds."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


async def test_dead_backend_loses_traffic_and_regains_it_after_restart(start_sim: StartSim) -> None:
    sims = [await start_sim() for _ in range(3)]
    async with running_corral(
        [s.url for s in sims], health_interval=0.1, strategy="round_robin"
    ) as (app, _):
        victim = app.services.backends[2]
        await sims[2].refuse_connections()
        await until(lambda: not victim.usable)
        async with httpx.AsyncClient(base_url=app.url, timeout=10) as client:
            before = generations(sims[2])
            for _ in range(9):
                assert (await client.post("/api/chat", json=CHAT)).status_code == 200
            assert generations(sims[2]) == before
            health = (await client.get("/health")).json()
            assert [b["state"] for b in health["backends"]] == ["up", "up", "down"]
            await sims[2].accept_connections()
            await until(lambda: victim.usable and victim.status == "up")
            for _ in range(9):
                assert (await client.post("/api/chat", json=CHAT)).status_code == 200
            assert generations(sims[2]) > before


async def test_model_held_by_one_backend_goes_only_there(start_sim: StartSim) -> None:
    sims = [
        await start_sim(models=["llama3.2"]),
        await start_sim(models=["llama3.2"]),
        await start_sim(models=["llama3.2", "mistral:7b"]),
    ]
    async with running_corral([s.url for s in sims], strategy="round_robin") as (app, _):
        async with httpx.AsyncClient(base_url=app.url, timeout=10) as client:
            for _ in range(6):
                r = await client.post("/api/chat", json={**CHAT, "model": "mistral:7b"})
                assert r.status_code == 200
            r = await client.post("/api/chat", json={**CHAT, "model": "nothing-here"})
            assert r.status_code == 404
            assert r.json() == {"error": 'model "nothing-here" not found, try pulling it first'}
    assert [generations(s) for s in sims] == [0, 0, 6]


async def test_model_whose_holders_are_all_down_is_503(start_sim: StartSim) -> None:
    sims = [await start_sim(models=["llama3.2"]), await start_sim(models=["mistral:7b"])]
    async with running_corral([s.url for s in sims], health_interval=0.1) as (app, _):
        await sims[1].refuse_connections()
        await until(lambda: not app.services.backends[1].usable)
        async with httpx.AsyncClient(base_url=app.url, timeout=10) as client:
            r = await client.post("/api/chat", json={**CHAT, "model": "mistral:7b"})
            assert r.status_code == 503
            assert int(r.headers["retry-after"]) >= 1
            assert (await client.post("/api/chat", json=CHAT)).status_code == 200


async def test_burst_stays_on_the_warm_backend_until_waiting_costs_more_than_loading(
    start_sim: StartSim,
) -> None:
    # Each generation takes ~0.1 s; loading the model on the cold backend costs 1 s.
    warm_sim = await start_sim(tokens_per_second=100.0, load_delay=1.0)
    cold_sim = await start_sim(tokens_per_second=100.0, load_delay=1.0)
    body = {**CHAT, "options": {"num_predict": 10}}
    async with running_corral(
        [warm_sim.url, cold_sim.url], max_concurrency=1, model_load_estimate=1.0
    ) as (app, _):
        warm, cold = app.services.backends
        cold.draining = True
        async with httpx.AsyncClient(base_url=app.url, timeout=30) as client:
            for _ in range(3):  # load it on one backend and learn how long a request takes
                assert (await client.post("/api/chat", json=body)).status_code == 200
            cold.draining = False
            assert warm.is_warm("llama3.2:latest", None) and not cold.is_warm("llama3.2:latest", None)
            # A small burst: waiting (0.1 s, 0.2 s) beats a 1 s load.
            await asyncio.gather(*(client.post("/api/chat", json=body) for _ in range(3)))
            assert generations(cold_sim) == 0
            # A big one: past ~10 waiting, loading the model elsewhere is cheaper.
            await asyncio.gather(*(client.post("/api/chat", json=body) for _ in range(24)))
            assert generations(cold_sim) >= 1
            assert generations(warm_sim) > generations(cold_sim)


async def test_busy_backend_is_retried_elsewhere_and_the_client_sees_one_clean_answer(
    start_sim: StartSim,
) -> None:
    busy, fine = await start_sim(), await start_sim()
    busy.faults.busy = True
    async with running_corral([busy.url, fine.url], strategy="round_robin") as (app, log):
        async with httpx.AsyncClient(base_url=app.url, timeout=10) as client:
            for _ in range(4):
                r = await client.post("/api/chat", json=CHAT)
                assert r.status_code == 200
                assert r.json()["done"] is True
    assert generations(fine) == 4


async def test_drop_after_the_first_chunk_ends_with_an_error_line_and_is_not_retried(
    start_sim: StartSim,
) -> None:
    flaky, other = await start_sim(), await start_sim()
    flaky.faults.drop_after_chunks = 2
    async with running_corral([flaky.url, other.url], strategy="round_robin") as (app, _):
        async with httpx.AsyncClient(base_url=app.url, timeout=10) as client:
            r = await client.post(
                "/api/generate", json={"model": "llama3.2", "prompt": "hi", "options": {"num_predict": 20}}
            )
    lines = [orjson.loads(line) for line in r.content.splitlines()]
    assert r.status_code == 200
    assert "error" in lines[-1] and all("error" not in line for line in lines[:-1])
    assert len(lines) == 3
    assert other.stats.requests["/api/generate"] == 0


async def test_drained_backend_finishes_in_flight_work_and_gets_nothing_new(
    start_sim: StartSim,
) -> None:
    slow, other = await start_sim(tokens_per_second=50.0), await start_sim()
    async with running_corral([slow.url, other.url], strategy="round_robin") as (app, _):
        async with httpx.AsyncClient(base_url=app.url, timeout=10) as client:
            long_body = {**CHAT, "options": {"num_predict": 25}}
            in_flight = asyncio.create_task(client.post("/api/chat", json=long_body))
            await slow.stats.wait_started()
            r = await client.post(f"/admin/backends/{app.services.backends[0].name}/drain")
            assert r.status_code == 200 and r.json()["state"] == "draining"
            for _ in range(4):
                assert (await client.post("/api/chat", json=CHAT)).status_code == 200
            assert (await in_flight).status_code == 200
            assert generations(slow) == 1
            view = (await client.get("/admin/backends")).json()["backends"]
            assert [b["state"] for b in view] == ["draining", "up"]
            await client.post(f"/admin/backends/{app.services.backends[0].name}/enable")
            for _ in range(4):
                assert (await client.post("/api/chat", json=CHAT)).status_code == 200
            assert generations(slow) > 1


async def test_cli_shows_the_fleet_and_drains(start_sim: StartSim) -> None:
    sim = await start_sim()
    async with running_corral([sim.url]) as (app, _):
        runner = CliRunner()
        listing = await asyncio.to_thread(runner.invoke, main, ["backends", "--url", app.url])
        assert listing.exit_code == 0, listing.output
        header, row = listing.output.splitlines()[:2]
        assert header.split()[:4] == ["name", "state", "in_flight", "queued"]
        assert row.split()[1] == "up"
        drained = await asyncio.to_thread(
            runner.invoke, main, ["backends", "--url", app.url, "drain", app.services.backends[0].name]
        )
        assert drained.exit_code == 0 and "draining" in drained.output
        assert app.services.backends[0].draining
        as_json = await asyncio.to_thread(runner.invoke, main, ["backends", "--url", app.url, "--json"])
        assert orjson.loads(as_json.output)[0]["state"] == "draining"


async def test_admin_api_needs_the_token_when_one_is_set(start_sim: StartSim) -> None:
    sim = await start_sim()
    async with running_corral([sim.url], admin_token="s3cret-admin") as (app, log):
        async with httpx.AsyncClient(base_url=app.url, timeout=10) as client:
            assert (await client.get("/admin/backends")).status_code == 401
            r = await client.get("/admin/backends", headers={"Authorization": "Bearer wrong"})
            assert r.status_code == 401
            r = await client.get("/admin/backends", headers={"Authorization": "Bearer s3cret-admin"})
            assert r.status_code == 200
        assert all("s3cret-admin" not in orjson.dumps(e).decode() for e in log.entries)


async def test_reload_swaps_backends_without_dropping_a_request(start_sim: StartSim) -> None:
    old, new = await start_sim(tokens_per_second=40.0), await start_sim()
    async with running_corral([old.url]) as (app, _):
        async with httpx.AsyncClient(base_url=app.url, timeout=10) as client:
            streaming = asyncio.create_task(
                client.post("/api/chat", json={**CHAT, "options": {"num_predict": 20}})
            )
            await old.stats.wait_started()
            settings = app.settings.model_copy(
                update={
                    "backends": [BackendSettings(url=new.url, name="new")],
                    "queue_size": 7,
                    "strategy": "round_robin",
                }
            )
            await app.reload(settings)
            assert [b.name for b in app.services.fleet.backends] == ["new"]
            assert app.services.router.queue_size == 7
            # the request that was running on the removed backend finishes normally
            finished = await streaming
            assert finished.status_code == 200 and finished.json()["done"] is True
            for _ in range(3):
                assert (await client.post("/api/chat", json=CHAT)).status_code == 200
            assert generations(new) == 3 and generations(old) == 1
            names = [b["name"] for b in (await client.get("/health")).json()["backends"]]
            assert names == ["new"]


async def test_create_from_uploaded_files_goes_where_the_blob_went(start_sim: StartSim) -> None:
    sims = [await start_sim(), await start_sim()]
    data = b"GGUF not really a model" * 100
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    async with running_corral([s.url for s in sims]) as (app, _):
        async with httpx.AsyncClient(base_url=app.url, timeout=10) as client:
            assert (await client.head(f"/api/blobs/{digest}")).status_code == 404
            assert (await client.post(f"/api/blobs/{digest}", content=data)).status_code == 201
            assert (await client.head(f"/api/blobs/{digest}")).status_code == 200
            r = await client.post(
                "/api/create",
                json={"model": "mine", "files": {"model.gguf": digest}, "stream": False},
            )
            assert r.status_code == 200, r.text
            r = await client.post("/api/chat", json={**CHAT, "model": "mine"})
            assert r.status_code == 200
            # X-Corral-Backend pins a blob check to the named backend
            other = app.services.backends[1].name
            r = await client.head(f"/api/blobs/{digest}", headers={"X-Corral-Backend": other})
            assert r.status_code == 404
            r = await client.head(f"/api/blobs/{digest}", headers={"X-Corral-Backend": "nope"})
            assert r.status_code == 400
    assert sims[0].stats.requests["/api/chat"] == 1
