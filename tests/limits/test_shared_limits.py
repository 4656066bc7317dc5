"""Limits kept in Redis: shared by every instance, and what happens when Redis goes away."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from corral.app import App
from corral.limits.redis import RedisLimiter
from corral.settings import LimitSettings, ScopeLimits
from tests.harness import running_corral
from tests.integration.conftest import StartSim
from tests.limits.test_gateway_limits import TIMEOUT, generate
from tests.stores.backing import RedisSpace


def closed_port() -> int:
    """A local port nothing listens on: bound, then released."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_two_instances_sharing_redis_enforce_one_limit(
    start_sim: StartSim, redis_space: RedisSpace
) -> None:
    sim = await start_sim()
    shared = {
        "limits": LimitSettings(key=ScopeLimits(requests=10, window=60)),
        "redis_url": redis_space.url,
        "redis_prefix": redis_space.prefix,
        "cache_mode": "off",
        "max_concurrency": 64,
    }
    async with running_corral([sim.url], **shared) as (one, _):
        async with running_corral([sim.url], **shared) as (two, _):
            async with (
                httpx.AsyncClient(base_url=one.url, timeout=TIMEOUT) as a,
                httpx.AsyncClient(base_url=two.url, timeout=TIMEOUT) as b,
            ):
                answers = await asyncio.gather(
                    *(c.post("/api/generate", json=generate()) for c in [a, b] * 20)
                )
    statuses = [answer.status_code for answer in answers]
    assert statuses.count(200) == 10
    assert statuses.count(429) == 30


async def stop_redis(app: App) -> None:
    """Redis goes away under a running corral: its limiter now points at a closed port."""
    stage = app.services.limits
    await stage.limiter.aclose()
    stage.limiter = RedisLimiter.from_url(
        f"redis://127.0.0.1:{closed_port()}/0", prefix="corral-test:limits:"
    )


async def test_with_redis_gone_corral_fails_open_and_keeps_serving(
    start_sim: StartSim, redis_space: RedisSpace
) -> None:
    sim = await start_sim()
    limits = LimitSettings(key=ScopeLimits(requests=2, window=60, tokens_per_minute=10_000))
    settings = {"redis_url": redis_space.url, "redis_prefix": redis_space.prefix}
    async with running_corral([sim.url], limits=limits, cache_mode="off", **settings) as (app, _):
        async with httpx.AsyncClient(base_url=app.url, timeout=TIMEOUT) as client:
            assert (await client.post("/api/generate", json=generate())).status_code == 200
            await stop_redis(app)
            statuses = [(await client.post("/api/generate", json=generate())).status_code
                        for _ in range(4)]  # fmt: skip
            await app.services.limits.drain()
    assert statuses == [200] * 4  # the limit of 2 could not be counted: open means open
    text = app.services.metrics.render().decode()
    assert "corral_limiter_errors_total" in text
    assert "corral_limiter_errors_total 0.0" not in text


async def test_with_redis_gone_corral_fails_closed_when_asked(
    start_sim: StartSim, redis_space: RedisSpace
) -> None:
    sim = await start_sim()
    limits = LimitSettings(key=ScopeLimits(requests=5), on_store_error="closed")
    settings = {"redis_url": redis_space.url, "redis_prefix": redis_space.prefix}
    async with running_corral([sim.url], limits=limits, cache_mode="off", **settings) as (app, _):
        async with httpx.AsyncClient(base_url=app.url, timeout=TIMEOUT) as client:
            assert (await client.post("/api/generate", json=generate())).status_code == 200
            await stop_redis(app)
            refused = await client.post("/api/generate", json=generate())
            # Routes without limits are untouched.
            tags = await client.get("/api/tags")
    assert refused.status_code == 503
    assert refused.json() == {"error": "rate limits cannot be checked right now"}
    assert refused.headers["Retry-After"] == "1"
    assert tags.status_code == 200


async def test_two_instances_sharing_redis_keep_one_token_budget(
    start_sim: StartSim, redis_space: RedisSpace
) -> None:
    sim = await start_sim()
    cap = 100
    shared = {
        "limits": LimitSettings(key=ScopeLimits(tokens_per_minute=1000)),
        "redis_url": redis_space.url,
        "redis_prefix": redis_space.prefix,
        "cache_mode": "off",
        "max_concurrency": 64,
    }
    async with running_corral([sim.url], **shared) as (one, _):
        async with running_corral([sim.url], **shared) as (two, _):
            async with (
                httpx.AsyncClient(base_url=one.url, timeout=TIMEOUT) as a,
                httpx.AsyncClient(base_url=two.url, timeout=TIMEOUT) as b,
            ):
                answers = await asyncio.gather(
                    *(c.post("/api/generate", json=generate(cap)) for c in [a, b] * 15)
                )
    admitted = [a.json() for a in answers if a.status_code == 200]
    spent = sum(a["prompt_eval_count"] + a["eval_count"] for a in admitted)
    assert admitted and {a.status_code for a in answers} == {200, 429}
    assert spent <= 1000 + cap


def _wait_listening(port: int, proc: subprocess.Popen[bytes], deadline: float = 60.0) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"corral did not listen on {port}")


async def test_two_corral_processes_sharing_redis_enforce_one_limit(
    start_sim: StartSim, redis_space: RedisSpace, tmp_path: Path
) -> None:
    sim = await start_sim()
    procs, urls = [], []
    for n in range(2):
        port = closed_port()
        env = {
            **os.environ,
            "CORRAL_PORT": str(port),
            "CORRAL_BACKENDS": sim.url,
            "CORRAL_DATA_DIR": str(tmp_path / f"data{n}"),
            "CORRAL_REDIS_URL": redis_space.url,
            "CORRAL_REDIS_PREFIX": redis_space.prefix,
            "CORRAL_LIMITS__OVERALL__REQUESTS": "10",
            "CORRAL_LIMITS__OVERALL__WINDOW": "60",
            "CORRAL_CACHE_MODE": "off",
            "CORRAL_BACKEND_MAX_CONCURRENCY": "64",
            "CORRAL_LOG_LEVEL": "warning",
        }
        proc = subprocess.Popen(  # noqa: ASYNC220  (started once; waited on in a thread)
            [sys.executable, "-m", "corral", "serve"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            cwd=tmp_path,
        )
        procs.append(proc)
        urls.append(f"http://127.0.0.1:{port}")
    try:
        for proc, url in zip(procs, urls, strict=True):
            await asyncio.to_thread(_wait_listening, int(url.rsplit(":", 1)[1]), proc)
        async with httpx.AsyncClient(timeout=TIMEOUT) as client:
            answers = await asyncio.gather(
                *(client.post(url + "/api/generate", json=generate()) for url in urls * 20)
            )
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            await asyncio.to_thread(proc.wait, 30)
    statuses = [answer.status_code for answer in answers]
    assert statuses.count(200) == 10
    assert statuses.count(429) == 30
    per_process = [sum(1 for a in answers[i::2] if a.status_code == 200) for i in range(2)]
    assert sum(per_process) == 10


async def test_a_redis_server_killed_mid_test_leaves_corral_serving(
    start_sim: StartSim, tmp_path: Path
) -> None:
    """A Redis of the test's own, really stopped (the shared one is left alone)."""
    server = shutil.which("redis-server")
    if server is None:
        message = "redis-server is not installed"
        if os.environ.get("CI") == "true":
            raise AssertionError(message)
        pytest.skip(message)
    port = closed_port()
    redis = subprocess.Popen(  # noqa: ASYNC220  (started once; waited on in a thread)
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        await asyncio.to_thread(_wait_listening, port, redis)
        sim = await start_sim()
        limits = LimitSettings(overall=ScopeLimits(requests=3, window=60))
        settings = {"redis_url": f"redis://127.0.0.1:{port}/0", "redis_prefix": "killed:"}
        async with running_corral([sim.url], limits=limits, cache_mode="off", **settings) as (
            app,
            _,
        ):
            async with httpx.AsyncClient(base_url=app.url, timeout=TIMEOUT) as client:
                before = [
                    (await client.post("/api/generate", json=generate())).status_code
                    for _ in range(4)
                ]
                redis.kill()
                await asyncio.to_thread(redis.wait, 30)
                after = [
                    (await client.post("/api/generate", json=generate())).status_code
                    for _ in range(4)
                ]
    finally:
        if redis.poll() is None:
            redis.kill()
    assert before == [200, 200, 200, 429]  # counted in Redis while it lived
    assert after == [200] * 4  # fail open: served, with a warning and a metric


async def test_with_redis_a_denied_request_takes_nothing_from_its_other_limits(
    start_sim: StartSim, redis_space: RedisSpace
) -> None:
    sim = await start_sim()
    limits = LimitSettings(key=ScopeLimits(requests=10, tokens_per_minute=50, concurrency=4))
    settings = {"redis_url": redis_space.url, "redis_prefix": redis_space.prefix}
    async with running_corral([sim.url], limits=limits, cache_mode="off", **settings) as (app, _):
        async with httpx.AsyncClient(base_url=app.url, timeout=TIMEOUT) as client:
            denied = await client.post("/api/generate", json=generate(100))
            await app.services.limits.drain()
            used = await app.services.limits.limiter.usage_many(
                ["ip:127.0.0.1:r10/60", "ip:127.0.0.1:c4/3600"]
            )
    assert denied.status_code == 429
    assert used == [0, 0]
