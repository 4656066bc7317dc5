"""The response cache through corral: hits, misses, replay shapes, digests, faults, coalescing.

Requests are deterministic (temperature 0, a fixed seed, or embeddings) unless a test says
otherwise; ``sim.stats.requests`` proves what reached the backend.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import ollama
import openai
import pytest
from click.testing import CliRunner

from corral.app import App
from corral.cache.key import cache_key
from corral.cli.main import main
from corral.testing.simulator import Simulator
from tests.harness import MemoryAccessLog, running_corral
from tests.integration.conftest import StartSim
from tests.integration.test_gateway_support import normalise

MODEL = "llama3.2"
COLD = {"temperature": 0}
MESSAGES = [{"role": "user", "content": "Why is the sky blue?"}]
CHAT = {"model": MODEL, "messages": MESSAGES, "options": COLD}
TIMEOUT = 30.0


async def eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:  # noqa: ASYNC109
    """Poll ``check`` until it holds (never a fixed wait)."""
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.005)


def entries(app: App) -> int:
    report = app.services.cache.report()
    return report.store.entries if report.store is not None else 0


@pytest.fixture
async def corral(sim: Simulator) -> AsyncIterator[tuple[App, MemoryAccessLog, httpx.AsyncClient]]:
    async with running_corral([sim.url]) as (app, log):
        async with httpx.AsyncClient(base_url=app.url, timeout=TIMEOUT) as client:
            yield app, log, client


# ---- hits and misses --------------------------------------------------------------------------


async def test_a_repeated_deterministic_request_is_answered_from_the_cache(
    sim: Simulator, corral: tuple[App, MemoryAccessLog, httpx.AsyncClient]
) -> None:
    app, log, client = corral
    first = await client.post("/api/chat", json={**CHAT, "stream": False})
    second = await client.post("/api/chat", json={**CHAT, "stream": False, "keep_alive": "1h"})
    assert first.headers["x-corral-cache"] == "miss"
    assert second.headers["x-corral-cache"] == "hit"
    assert second.content == first.content
    assert second.headers["content-type"] == first.headers["content-type"]
    assert sim.stats.requests["/api/chat"] == 1
    await eventually(lambda: len(log.entries) >= 2)
    assert [e.get("cache") for e in log.entries if e["route"] == "/api/chat"] == ["miss", "hit"]
    hit_line = log.entries[-1]
    assert hit_line["status"] == 200 and hit_line["bytes"] == len(second.content)


async def test_a_sampled_request_bypasses_the_cache(
    sim: Simulator, corral: tuple[App, MemoryAccessLog, httpx.AsyncClient]
) -> None:
    app, _, client = corral
    for _ in range(2):
        answer = await client.post("/api/chat", json={"model": MODEL, "messages": MESSAGES})
        assert answer.headers["x-corral-cache"] == "bypass"
    assert sim.stats.requests["/api/chat"] == 2
    assert entries(app) == 0


async def test_other_endpoints_carry_no_cache_header(
    corral: tuple[App, MemoryAccessLog, httpx.AsyncClient],
) -> None:
    _, _, client = corral
    assert "x-corral-cache" not in (await client.get("/api/tags")).headers


async def test_cache_control_no_cache_refreshes_and_no_store_leaves_no_trace(
    sim: Simulator, corral: tuple[App, MemoryAccessLog, httpx.AsyncClient]
) -> None:
    app, _, client = corral
    body = {**CHAT, "stream": False}
    await client.post("/api/chat", json=body)
    fresh = await client.post("/api/chat", json=body, headers={"Cache-Control": "no-cache"})
    assert fresh.headers["x-corral-cache"] == "bypass"
    assert sim.stats.requests["/api/chat"] == 2
    assert (await client.post("/api/chat", json=body)).headers["x-corral-cache"] == "hit"

    other = {**body, "messages": [{"role": "user", "content": "Something else"}]}
    kept = entries(app)
    skipped = await client.post("/api/chat", json=other, headers={"Cache-Control": "no-store"})
    assert skipped.headers["x-corral-cache"] == "bypass"
    assert entries(app) == kept
    assert (await client.post("/api/chat", json=other)).headers["x-corral-cache"] == "miss"
    assert sim.stats.requests["/api/chat"] == 4


async def test_cache_mode_all_caches_sampled_requests_and_off_nothing(
    start_sim: StartSim,
) -> None:
    sim = await start_sim()
    sampled = {"model": MODEL, "messages": MESSAGES, "stream": False}
    async with running_corral([sim.url], cache_mode="all") as (app, _):
        async with httpx.AsyncClient(base_url=app.url, timeout=TIMEOUT) as client:
            await client.post("/api/chat", json=sampled)
            hit = await client.post("/api/chat", json=sampled)
            assert hit.headers["x-corral-cache"] == "hit"
    async with running_corral([sim.url], cache_mode="off") as (app, _):
        async with httpx.AsyncClient(base_url=app.url, timeout=TIMEOUT) as client:
            for _ in range(2):
                answer = await client.post("/api/embed", json={"model": "nomic-embed-text", "input": "a"})
                assert answer.headers["x-corral-cache"] == "bypass"
    assert sim.stats.requests["/api/chat"] == 1
    assert sim.stats.requests["/api/embed"] == 2


async def test_a_reload_changes_the_mode_and_ttl(
    sim: Simulator, corral: tuple[App, MemoryAccessLog, httpx.AsyncClient]
) -> None:
    app, _, client = corral
    await app.reload(app.settings.model_copy(update={"cache_mode": "off", "cache_ttl": 5.0}))
    assert app.services.cache.ttl == 5.0
    answer = await client.post("/api/chat", json={**CHAT, "stream": False})
    assert answer.headers["x-corral-cache"] == "bypass"


# ---- replay shapes, with the official clients --------------------------------------------------


async def test_a_hit_replays_as_json_ndjson_and_for_the_ollama_client(
    start_sim: StartSim,
) -> None:
    sim, direct_sim = await start_sim(), await start_sim()
    async with running_corral([sim.url]) as (app, _):
        via = ollama.AsyncClient(host=app.url, timeout=TIMEOUT)
        direct = ollama.AsyncClient(host=direct_sim.url, timeout=TIMEOUT)
        try:
            # Stored from a stream; asked for again streamed, and as one JSON object.
            kept = [p async for p in await via.chat(MODEL, messages=MESSAGES, options=COLD, stream=True)]
            again = [p async for p in await via.chat(MODEL, messages=MESSAGES, options=COLD, stream=True)]
            whole = await via.chat(MODEL, messages=MESSAGES, options=COLD)
            expected = await direct.chat(MODEL, messages=MESSAGES, options=COLD)
            assert normalise(again) == normalise(kept)
            assert normalise(whole) == normalise(expected)
            assert again[-1].eval_count == expected.eval_count and again[-1].done

            # Stored as JSON; asked for again as a stream.
            one = await via.generate(MODEL, "Why?", options={"seed": 7})
            parts = [p async for p in await via.generate(MODEL, "Why?", options={"seed": 7}, stream=True)]
            assert "".join(p.response for p in parts) == one.response
            assert parts[-1].done and parts[-1].eval_count == one.eval_count
            assert parts[-1].context == one.context

            vectors = await via.embed("nomic-embed-text", input=["a", "b"])
            again_vectors = await via.embed("nomic-embed-text", input=["a", "b"])
            assert again_vectors.embeddings == vectors.embeddings
        finally:
            await via.close()
            await direct.close()
    assert sim.stats.requests["/api/chat"] == 1
    assert sim.stats.requests["/api/generate"] == 1
    assert sim.stats.requests["/api/embed"] == 1


async def test_a_hit_replays_as_sse_and_json_for_the_openai_client(start_sim: StartSim) -> None:
    sim, direct_sim = await start_sim(), await start_sim()
    usage = {"include_usage": True}
    async with running_corral([sim.url]) as (app, _):
        via = openai.AsyncOpenAI(base_url=app.url + "/v1", api_key="x", max_retries=0)
        direct = openai.AsyncOpenAI(base_url=direct_sim.url + "/v1", api_key="x", max_retries=0)
        try:
            ask: dict[str, Any] = {"model": MODEL, "messages": MESSAGES, "seed": 3}
            kept = await via.chat.completions.create(**ask)
            chunks = [c async for c in await via.chat.completions.create(**ask, stream=True, stream_options=usage)]
            direct_chunks = [c async for c in await direct.chat.completions.create(**ask, stream=True, stream_options=usage)]
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            assert text == kept.choices[0].message.content
            assert normalise(chunks[-2:]) == normalise(direct_chunks[-2:])  # finish, usage
            assert chunks[-1].usage is not None and chunks[-1].usage == kept.usage

            prompt: dict[str, Any] = {"model": MODEL, "prompt": "Once upon a time", "temperature": 0}
            streamed = [c async for c in await via.completions.create(**prompt, stream=True, stream_options=usage)]
            whole = await via.completions.create(**prompt)
            expected = await direct.completions.create(**prompt)
            assert normalise(whole) == normalise(expected)
            assert "".join(c.choices[0].text for c in streamed if c.choices) == whole.choices[0].text

            first = await via.embeddings.create(model="nomic-embed-text", input="a")
            second = await via.embeddings.create(model="nomic-embed-text", input="a")
            assert second.data[0].embedding == first.data[0].embedding
        finally:
            await via.close()
            await direct.close()
    assert sim.stats.requests["/v1/chat/completions"] == 1
    assert sim.stats.requests["/v1/completions"] == 1
    assert sim.stats.requests["/v1/embeddings"] == 1


# ---- what is never kept -----------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["error_after_chunks", "drop_after_chunks"])
async def test_an_errored_or_cut_off_stream_is_not_kept(
    sim: Simulator, corral: tuple[App, MemoryAccessLog, httpx.AsyncClient], fault: str
) -> None:
    app, _, client = corral
    sim.faults.update({fault: 3, "times": 1})
    body = {**CHAT, "stream": True}
    broken = await client.post("/api/chat", json=body)
    # The model's error line, or corral's own when the connection was cut mid-stream.
    assert b'"error"' in broken.content.splitlines()[-1]
    again = await client.post("/api/chat", json=body)
    assert again.headers["x-corral-cache"] == "miss"
    assert b'"done":true' in again.content.splitlines()[-1]
    await eventually(lambda: entries(app) == 1)
    assert (await client.post("/api/chat", json=body)).headers["x-corral-cache"] == "hit"
    assert sim.stats.requests["/api/chat"] == 2


async def test_a_model_load_answer_is_not_kept(
    sim: Simulator, corral: tuple[App, MemoryAccessLog, httpx.AsyncClient]
) -> None:
    _, _, client = corral
    load = {"model": MODEL, "messages": [], "options": COLD, "stream": False}
    for _ in range(2):
        assert (await client.post("/api/chat", json=load)).json()["done_reason"] == "load"
    assert sim.stats.requests["/api/chat"] == 2


async def test_a_repulled_model_with_a_new_digest_misses(
    sim: Simulator, corral: tuple[App, MemoryAccessLog, httpx.AsyncClient]
) -> None:
    app, _, client = corral
    body = {"model": MODEL, "prompt": "Why?", "options": COLD, "stream": False}
    await client.post("/api/generate", json=body)
    assert (await client.post("/api/generate", json=body)).headers["x-corral-cache"] == "hit"

    sim.repull_changes_digest = True
    old = sim.catalogue.get(MODEL)
    assert old is not None
    pulled = await client.post("/api/pull", json={"model": MODEL, "stream": False})
    assert pulled.status_code == 200
    new = sim.catalogue.get(MODEL)
    assert new is not None and new.digest != old.digest
    backend = app.services.backends[0]
    assert backend.models is not None
    await eventually(lambda: backend.models is not None and backend.models[f"{MODEL}:latest"] == new.digest)

    after = await client.post("/api/generate", json=body)
    assert after.headers["x-corral-cache"] == "miss"
    assert sim.stats.requests["/api/generate"] == 2


# ---- coalescing -------------------------------------------------------------------------------


async def test_twenty_concurrent_identical_requests_reach_the_simulator_once(
    start_sim: StartSim,
) -> None:
    # Slow enough that all twenty arrive while the first is still being answered.
    sim = await start_sim(first_token_delay=0.5)
    async with running_corral([sim.url]) as (app, _):
        async with httpx.AsyncClient(base_url=app.url, timeout=TIMEOUT) as client:
            answers = await asyncio.gather(
                *(client.post("/api/chat", json={**CHAT, "stream": i % 2 == 0}) for i in range(20))
            )
        statuses = sorted(a.headers["x-corral-cache"] for a in answers)
        assert statuses == ["hit"] * 19 + ["miss"]
        assert sim.stats.requests["/api/chat"] == 1
        streamed = {a.content for i, a in enumerate(answers) if i % 2 == 0}
        whole = {a.content for i, a in enumerate(answers) if i % 2 == 1}
        assert len(whole) == 1 and len(streamed) == 1
        assert app.services.cache.counters.coalesced == 19


async def test_followers_of_a_failed_request_go_on_by_themselves(start_sim: StartSim) -> None:
    sim = await start_sim(first_token_delay=0.3)
    sim.faults.update({"error_after_chunks": 1, "times": 1})
    async with running_corral([sim.url]) as (app, _):
        async with httpx.AsyncClient(base_url=app.url, timeout=TIMEOUT) as client:
            answers = await asyncio.gather(
                *(client.post("/api/chat", json={**CHAT, "stream": True}) for _ in range(5))
            )
        failed = [a for a in answers if b'"error"' in a.content]
        assert len(failed) == 1
        good = {a.content for a in answers if a not in failed}
        assert len(good) == 1
        # The first follower to wake led the others: two generations in all.
        assert sim.stats.requests["/api/chat"] == 2


async def test_followers_of_a_leader_whose_client_left_are_still_answered(
    sim: Simulator, corral: tuple[App, MemoryAccessLog, httpx.AsyncClient]
) -> None:
    app, _, client = corral
    sim.faults.update({"hang": True, "times": 1})  # the first request never gets an answer
    body = {**CHAT, "stream": False}
    leader = asyncio.create_task(client.post("/api/chat", json=body))
    await sim.stats.wait_started()
    followers = [asyncio.create_task(client.post("/api/chat", json=body)) for _ in range(4)]
    backend = app.services.backends[0]
    assert backend.models is not None
    key = cache_key("chat", MODEL, backend.models[f"{MODEL}:latest"], body)
    await eventually(lambda: (f := app.services.cache.flights.get(key)) is not None and f.followers == 4)
    leader.cancel()
    answers = await asyncio.gather(*followers)
    assert sorted(a.headers["x-corral-cache"] for a in answers) == ["hit"] * 3 + ["miss"]
    assert len({a.content for a in answers}) == 1
    await sim.stats.wait_cancelled()
    assert sim.stats.requests["/api/chat"] == 2


async def test_followers_of_an_answer_too_large_to_keep_ask_at_once(start_sim: StartSim) -> None:
    delay = 0.4
    sim = await start_sim(first_token_delay=delay)
    async with running_corral([sim.url], cache_max_entry_size=64) as (app, _):
        async with httpx.AsyncClient(base_url=app.url, timeout=TIMEOUT) as client:
            answers = await asyncio.gather(
                *(client.post("/api/chat", json={**CHAT, "stream": False}) for _ in range(5))
            )
        assert all(a.status_code == 200 for a in answers)
        assert entries(app) == 0
    starts = sorted(g.started_at for g in sim.stats.generations)
    assert len(starts) == 5
    # The four followers went together once the first answer came, not one behind the other.
    assert starts[-1] - starts[1] < delay


# ---- administration and metrics ---------------------------------------------------------------


async def test_admin_api_and_cli_show_and_clear_the_cache(
    corral: tuple[App, MemoryAccessLog, httpx.AsyncClient],
) -> None:
    app, _, client = corral
    await client.post("/api/chat", json={**CHAT, "stream": False})
    await client.post("/api/chat", json={**CHAT, "stream": False})
    stats = (await client.get("/admin/cache")).json()
    assert stats["backend"] == "memory" and stats["mode"] == "deterministic"
    assert (stats["entries"], stats["hits"], stats["misses"], stats["stores"]) == (1, 1, 1, 1)
    assert stats["bytes"] > 0

    runner = CliRunner()
    shown = await asyncio.to_thread(runner.invoke, main, ["cache", "stats", "--url", app.url])
    assert shown.exit_code == 0, shown.output
    assert "entries" in shown.output and "memory" in shown.output
    cleared = await asyncio.to_thread(runner.invoke, main, ["cache", "clear", "--url", app.url])
    assert cleared.exit_code == 0 and "cleared 1" in cleared.output
    assert (await client.get("/admin/cache")).json()["entries"] == 0
    assert (await client.delete("/admin/cache")).json() == {"cleared": 0}
    assert (await client.post("/admin/cache")).status_code == 405


async def test_metrics_count_hits_misses_and_size(
    corral: tuple[App, MemoryAccessLog, httpx.AsyncClient],
) -> None:
    _, _, client = corral
    for _ in range(3):
        await client.post("/api/embed", json={"model": "nomic-embed-text", "input": "a"})
    text = (await client.get("/metrics")).text
    for line in ("ollama_cache_hits_total 2.0", "ollama_cache_misses_total 1.0",
                 "ollama_cache_size 1.0", "corral_cache_stores_total 1.0",
                 "corral_cache_evictions_total 0.0"):  # fmt: skip
        assert line in text
    assert "corral_cache_bytes " in text
