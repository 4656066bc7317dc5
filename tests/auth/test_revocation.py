"""A key revoked from the command line is refused by running corrals: by one sharing the SQLite
file within ``auth.refresh_interval``, and at once by every instance sharing PostgreSQL and
Redis."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import httpx

from corral.app import App
from corral.auth.redis_notices import RedisNotices
from corral.settings import AuthSettings
from corral.storage.keys import KeySpec
from tests.auth.gateway import CHAT, RecordingSimulator
from tests.harness import running_corral
from tests.stores.backing import RedisSpace

SRC = Path(__file__).resolve().parents[2] / "src"
# The most a test waits for a change to show: the poll interval (or a Redis message) plus the
# time a loaded test machine may take to run one refresh.
SLACK = 1.5


async def cli(env: dict[str, str], *args: str) -> str:
    """``corral keys ...`` in its own process, as an operator would run it."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
    environ.update(env, PYTHONPATH=str(SRC))
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "corral", "keys", *args,
        env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    return out.decode().strip()


async def status_of(client: httpx.AsyncClient, app: App, key: str) -> int:
    r = await client.post(app.url + "/api/chat", json=CHAT, headers={"X-API-Key": key})
    return r.status_code


async def wait_for_status(
    client: httpx.AsyncClient, apps: Sequence[App], key: str, status: int, within: float
) -> float:
    """Poll every app until each answers ``status``; how long that took."""
    started = time.monotonic()
    pending = list(apps)
    while pending:
        pending = [app for app in pending if await status_of(client, app, key) != status]
        elapsed = time.monotonic() - started
        assert elapsed < within, f"still not {status} after {elapsed:.2f}s"
        if pending:
            await asyncio.sleep(0.02)
    return time.monotonic() - started


@asynccontextmanager
async def simulator() -> AsyncIterator[RecordingSimulator]:
    sim = RecordingSimulator()
    await sim.start("127.0.0.1", 0)
    try:
        yield sim
    finally:
        await sim.aclose()


async def test_a_key_revoked_from_the_cli_is_refused_within_the_refresh_interval(
    tmp_path: Path,
) -> None:
    interval = 0.5
    data = tmp_path / "data"
    env = {"CORRAL_DATA_DIR": str(data)}
    async with (
        simulator() as sim,
        running_corral(
            [sim.url], data_dir=data, auth=AuthSettings(refresh_interval=interval)
        ) as (app, _),
        httpx.AsyncClient(timeout=10) as client,
    ):
        key = await cli(env, "create", "--name", "ci")
        await wait_for_status(client, [app], key, 200, interval + SLACK)
        await cli(env, "revoke", "ci")
        took = await wait_for_status(client, [app], key, 401, interval + SLACK)
        r = await client.post(app.url + "/api/chat", json=CHAT, headers={"X-API-Key": key})
        assert r.json() == {"error": "API key has been revoked"}
        assert took <= interval + SLACK


async def test_every_instance_on_postgresql_and_redis_refuses_a_revoked_key_at_once(
    postgres_url: str, redis_space: RedisSpace
) -> None:
    # Polling is slowed to an hour: only Redis can bring the news within this test.
    settings = {
        "database_url": postgres_url,
        "redis_url": redis_space.url,
        "redis_prefix": redis_space.prefix,
        "auth": AuthSettings(refresh_interval=3600),
    }
    env = {
        "CORRAL_DATABASE_URL": postgres_url,
        "CORRAL_REDIS_URL": redis_space.url,
        "CORRAL_REDIS_PREFIX": redis_space.prefix,
    }
    async with AsyncExitStack() as stack:
        sim = await stack.enter_async_context(simulator())
        apps = [
            (await stack.enter_async_context(running_corral([sim.url], **settings)))[0]
            for _ in range(2)
        ]
        for app in apps:
            notices = app.services.key_notices
            assert isinstance(notices, RedisNotices)
            await asyncio.wait_for(notices.subscribed.wait(), 10)
        client = await stack.enter_async_context(httpx.AsyncClient(timeout=10))
        keep = await cli(env, "create", "--name", "keep")
        key = await cli(env, "create", "--name", "ci")
        await wait_for_status(client, apps, key, 200, SLACK)
        await cli(env, "revoke", "ci")
        await wait_for_status(client, apps, key, 401, SLACK)
        for app in apps:
            assert await status_of(client, app, keep) == 200


async def test_instances_sharing_postgresql_without_redis_poll(postgres_url: str) -> None:
    interval = 0.3
    settings = {"database_url": postgres_url, "auth": AuthSettings(refresh_interval=interval)}
    async with AsyncExitStack() as stack:
        sim = await stack.enter_async_context(simulator())
        apps = [
            (await stack.enter_async_context(running_corral([sim.url], **settings)))[0]
            for _ in range(2)
        ]
        client = await stack.enter_async_context(httpx.AsyncClient(timeout=10))
        _, key = await apps[0].services.key_admin.create_key(KeySpec(name="ci"))
        await wait_for_status(client, apps, key, 200, interval + SLACK)
        await apps[1].services.key_admin.revoke_key("ci")
        await wait_for_status(client, apps, key, 401, interval + SLACK)
