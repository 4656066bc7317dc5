"""The databases and Redis the store tests run against, one fresh instance per test.

SQLite is a file in the test's own directory. PostgreSQL (``TEST_POSTGRES_URL``, default
``postgresql://postgres@127.0.0.1:5432/test``, trust auth) gets a database of its own, created
for the test and dropped after it. Redis (``TEST_REDIS_URL``, default
``redis://127.0.0.1:6379/0``) gets a unique key prefix, whose keys are deleted after the test.

Where PostgreSQL or Redis is not running, its tests are skipped with the reason, except under
``CI=true``, where they fail: CI must not pass by testing less.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy.engine import make_url

from corral.storage.engine import Database

POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
CONNECT_TIMEOUT = 3.0


def unavailable(what: str, why: str) -> None:
    """Skip the test, or fail it under CI=true."""
    message = f"{what} is not available ({why})"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message + "; CI must run every store test", pytrace=False)
    pytest.skip(message)


def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'corral.db'}"


def _libpq_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _admin_connection() -> psycopg.AsyncConnection[Any]:
    # Autocommit: CREATE and DROP DATABASE cannot run inside a transaction.
    try:
        return await psycopg.AsyncConnection.connect(
            _libpq_dsn(POSTGRES_URL), autocommit=True, connect_timeout=int(CONNECT_TIMEOUT)
        )
    except (OSError, psycopg.Error, TimeoutError) as exc:
        unavailable(f"PostgreSQL at {make_url(POSTGRES_URL).host}", type(exc).__name__)
        raise


async def create_postgres_database() -> str:
    """A new, empty database; returns its URL. Drop it with :func:`drop_postgres_database`."""
    name = "corral_test_" + secrets.token_hex(6)
    conn = await _admin_connection()
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)


async def drop_postgres_database(url: str) -> None:
    name = make_url(url).database
    conn = await _admin_connection()
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    url = await create_postgres_database()
    try:
        yield url
    finally:
        await drop_postgres_database(url)


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """Each test using this runs twice: on an SQLite file and on a PostgreSQL database."""
    if request.param == "sqlite":
        yield sqlite_url(tmp_path)
        return
    url = await create_postgres_database()
    try:
        yield url
    finally:
        await drop_postgres_database(url)


class RedisSpace:
    """A Redis URL and a prefix no other test uses."""

    def __init__(self, url: str, prefix: str) -> None:
        self.url = url
        self.prefix = prefix


@asynccontextmanager
async def redis_prefix() -> AsyncIterator[tuple[Redis, str]]:
    """A client of the test Redis and a key prefix of the test's own, whose keys are deleted
    on the way out; the test is skipped (failed under ``CI=true``) when Redis does not answer."""
    client = Redis.from_url(REDIS_URL, socket_connect_timeout=CONNECT_TIMEOUT)
    try:
        await asyncio.wait_for(client.ping(), CONNECT_TIMEOUT)
    except (RedisError, OSError, TimeoutError) as exc:
        await client.aclose()
        unavailable(f"Redis at {REDIS_URL}", type(exc).__name__)
    prefix = f"corral-test-{secrets.token_hex(6)}:"
    try:
        yield client, prefix
    finally:
        keys = [key async for key in client.scan_iter(match=prefix + "*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


@pytest.fixture
async def redis_space() -> AsyncIterator[RedisSpace]:
    async with redis_prefix() as (_, prefix):
        yield RedisSpace(REDIS_URL, prefix)


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    """The database at ``database_url``, migrated and open for the test."""
    db = Database(database_url)
    await db.start()
    try:
        yield db
    finally:
        await db.aclose()
