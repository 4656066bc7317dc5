"""The usage store contract, run against an SQLite file and a PostgreSQL database: records go
in in batches through the queue, and come out as totals per key, model, backend and day."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from corral.auth.keyformat import new_key
from corral.errors import BadRequest
from corral.observability.usage_writer import UsageWriter
from corral.storage.engine import Database
from corral.storage.keys import KeySpec, SqlKeyStore
from corral.storage.usage import SqlUsageStore, UsageQuery, UsageRecord, parse_since

DAY1 = datetime(2026, 11, 20, 23, 30, tzinfo=UTC)
DAY2 = datetime(2026, 11, 21, 0, 30, tzinfo=UTC)


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    db = Database(database_url)
    await db.start()
    try:
        yield db
    finally:
        await db.aclose()


async def make_key(database: Database, name: str) -> int:
    issued = new_key()
    record = await SqlKeyStore(database).create(
        KeySpec(name=name), prefix=issued.prefix, digest=issued.digest
    )
    return record.id


def record(ts: datetime, key_id: int | None, model: str, backend: str, status: int = 200,
           prompt: int | None = 10, completion: int | None = 20) -> UsageRecord:  # fmt: skip
    return UsageRecord(
        ts=ts,
        route="/api/chat",
        status=status,
        key_id=key_id,
        model=model,
        backend=backend,
        request_id="r",
        client_ip="127.0.0.1",
        prompt_tokens=prompt,
        completion_tokens=completion,
        duration_ms=5.0,
    )


async def fill(database: Database) -> tuple[int, int]:
    ci, bot = await make_key(database, "ci"), await make_key(database, "bot")
    await SqlUsageStore(database).insert(
        [
            record(DAY1, ci, "llama3.2:latest", "gpu1"),
            record(DAY1, ci, "qwen2.5:0.5b", "gpu2", prompt=1, completion=2),
            record(DAY2, bot, "llama3.2:latest", "gpu1", status=499, prompt=None, completion=None),
            record(DAY2, None, "llama3.2:latest", "gpu2", status=500, prompt=3, completion=None),
        ]
    )
    return ci, bot


async def test_totals_per_key_carry_the_key_name(database: Database) -> None:
    ci, bot = await fill(database)
    rows = await SqlUsageStore(database).query(UsageQuery(by="key"))
    by_group = {row.group: row for row in rows}
    assert set(by_group) == {str(ci), str(bot), None}
    assert by_group[str(ci)].name == "ci"
    assert (by_group[str(ci)].requests, by_group[str(ci)].prompt_tokens) == (2, 11)
    assert (by_group[str(ci)].completion_tokens, by_group[str(ci)].total_tokens) == (22, 33)
    assert (by_group[str(bot)].requests, by_group[str(bot)].errors) == (1, 1)
    assert by_group[str(bot)].total_tokens == 0
    assert by_group[None].name is None and by_group[None].prompt_tokens == 3


async def test_totals_per_model_backend_and_utc_day(database: Database) -> None:
    await fill(database)
    store = SqlUsageStore(database)
    models = {r.group: r.requests for r in await store.query(UsageQuery(by="model"))}
    assert models == {"llama3.2:latest": 3, "qwen2.5:0.5b": 1}
    backends = {r.group: r.total_tokens for r in await store.query(UsageQuery(by="backend"))}
    assert backends == {"gpu1": 30, "gpu2": 6}
    days = {r.group: r.requests for r in await store.query(UsageQuery(by="day"))}
    assert days == {"2026-11-20": 2, "2026-11-21": 2}


async def test_since_until_and_key_narrow_the_report(database: Database) -> None:
    ci, _ = await fill(database)
    store = SqlUsageStore(database)
    later = await store.query(UsageQuery(by="model", since=DAY2))
    assert {r.group: r.requests for r in later} == {"llama3.2:latest": 2}
    earlier = await store.query(UsageQuery(by="backend", until=DAY2))
    assert sum(r.requests for r in earlier) == 2
    only_ci = await store.query(UsageQuery(by="model", key_id=ci))
    assert sum(r.requests for r in only_ci) == 2


async def test_the_writer_batches_and_flushes_everything_on_close(database: Database) -> None:
    writer = UsageWriter(SqlUsageStore(database), max_queue=1000, batch_size=7, interval=60)
    writer.start()
    for n in range(50):
        writer.record(record(DAY1 + timedelta(seconds=n), None, "m", "b"))
    await writer.aclose()  # long before the 60 s interval: the close writes what is left
    (row,) = await SqlUsageStore(database).query(UsageQuery(by="model"))
    assert row.requests == 50 and writer.written == 50 and writer.dropped == 0


async def test_a_full_writer_queue_drops_and_counts_without_waiting(database: Database) -> None:
    writer = UsageWriter(SqlUsageStore(database), max_queue=10, batch_size=100, interval=60)
    for _ in range(25):
        writer.record(record(DAY1, None, "m", "b"))  # never awaits: the queue is a deque
    assert (writer.queued, writer.dropped) == (10, 15)
    await writer.flush()
    assert writer.queued == 0
    (row,) = await SqlUsageStore(database).query(UsageQuery(by="model"))
    assert row.requests == 10


async def test_a_batch_reaching_batch_size_wakes_the_writer(database: Database) -> None:
    writer = UsageWriter(SqlUsageStore(database), max_queue=100, batch_size=5, interval=3600)
    writer.start()
    try:
        for _ in range(5):
            writer.record(record(DAY1, None, "m", "b"))
        for _ in range(200):  # readiness polling, not a fixed sleep
            if writer.written == 5:
                break
            await asyncio.sleep(0.01)
        assert writer.written == 5
    finally:
        await writer.aclose()


def test_report_parameters_are_checked() -> None:
    now = datetime(2026, 11, 23, 12, tzinfo=UTC)
    assert parse_since("24h", now) == now - timedelta(days=1)
    assert parse_since("2026-11-01", now) == datetime(2026, 11, 1, tzinfo=UTC)
    assert parse_since(None, now) is None
    with pytest.raises(BadRequest):
        parse_since("yesterday", now)
    with pytest.raises(BadRequest):
        UsageQuery(by="colour")  # type: ignore[arg-type]
