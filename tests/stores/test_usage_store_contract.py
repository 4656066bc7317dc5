"""The usage store contract, run against an SQLite file and a PostgreSQL database: records go
in in batches through the queue, per request or summed per minute, and come out as totals per
key, model, backend and day."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from corral.auth.keyformat import new_key
from corral.errors import BadRequest
from corral.observability.usage_writer import UsageWriter
from corral.storage.engine import Database
from corral.storage.keys import KeySpec, SqlKeyStore
from corral.storage.usage import (
    SqlUsageStore,
    UsageQuery,
    UsageRecord,
    UsageTotals,
    parse_since,
)

DAY1 = datetime(2026, 11, 20, 23, 30, tzinfo=UTC)
DAY2 = datetime(2026, 11, 21, 0, 30, tzinfo=UTC)


async def make_key(database: Database, name: str) -> int:
    issued = new_key()
    record = await SqlKeyStore(database).create(
        KeySpec(name=name), prefix=issued.prefix, digest=issued.digest
    )
    return record.id


def record(ts: datetime, key_id: int | None, model: str, backend: str, status: int = 200,
           prompt: int | None = 10, completion: int | None = 20) -> UsageRecord:  # fmt: skip
    return UsageRecord(
        ts=ts.timestamp(),
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
        ttft_ms=2.0,
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


async def row_count(database: Database) -> int:
    return await database.read(
        lambda conn: int(conn.execute(sa.text("SELECT count(*) FROM usage")).scalar_one())
    )


async def test_the_writer_batches_and_flushes_everything_on_close(database: Database) -> None:
    writer = UsageWriter(
        SqlUsageStore(database), per_request=True, max_queue=1000, batch_size=7, interval=60
    )
    writer.start()
    for n in range(50):
        writer.record(record(DAY1 + timedelta(seconds=n), None, "m", "b"))
    await writer.aclose()  # long before the 60 s interval: the close writes what is left
    (row,) = await SqlUsageStore(database).query(UsageQuery(by="model"))
    assert row.requests == 50 and writer.written == 50 and writer.dropped == 0
    assert await row_count(database) == 50


async def test_per_minute_one_row_sums_the_requests_of_a_minute(database: Database) -> None:
    ci = await make_key(database, "ci")
    writer = UsageWriter(SqlUsageStore(database), max_queue=1000, batch_size=7, interval=60)
    minute = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
    for n in range(30):  # 30 requests in one minute, 10 in the next
        writer.record(record(minute + timedelta(seconds=2 * n), ci, "m", "gpu1"))
    for n in range(10):
        writer.record(record(minute + timedelta(minutes=1, seconds=n), ci, "m", "gpu1"))
    writer.record(record(minute, ci, "m", "gpu1", status=500, prompt=None, completion=None))
    assert writer.queued == 3  # (10:00, 200), (10:01, 200), (10:00, 500)
    await writer.flush()
    assert await row_count(database) == 3 and writer.written == 41
    (row,) = await SqlUsageStore(database).query(UsageQuery(by="key"))
    assert (row.requests, row.errors, row.prompt_tokens, row.completion_tokens) == (41, 1, 400, 800)
    assert (row.duration_ms, row.ttft_ms) == (205.0, 82.0)
    later = await SqlUsageStore(database).query(
        UsageQuery(by="key", since=minute.replace(minute=1))
    )
    assert [r.requests for r in later] == [10]


async def test_per_minute_a_flush_mid_minute_adds_a_second_row(database: Database) -> None:
    writer = UsageWriter(SqlUsageStore(database), max_queue=1000, interval=60)
    for _ in range(3):
        writer.record(record(DAY1, None, "m", "b"))
    await writer.flush()
    for _ in range(4):
        writer.record(record(DAY1, None, "m", "b"))
    await writer.flush()
    (row,) = await SqlUsageStore(database).query(UsageQuery(by="day"))
    assert row.requests == 7 and await row_count(database) == 2


async def test_per_minute_the_bound_is_on_rows_not_requests(database: Database) -> None:
    writer = UsageWriter(SqlUsageStore(database), max_queue=2, interval=60)
    for model in ("a", "a", "a", "b", "c", "c"):
        writer.record(record(DAY1, None, model, "gpu1"))
    assert (writer.queued, writer.dropped) == (2, 2)  # "c" had no room, twice
    await writer.flush()
    models = {
        r.group: r.requests for r in await SqlUsageStore(database).query(UsageQuery(by="model"))
    }
    assert models == {"a": 3, "b": 1}


async def test_rows_that_cannot_be_written_are_kept_for_the_next_flush(database: Database) -> None:
    store = SqlUsageStore(database)
    failing = FailingOnce(store)
    writer = UsageWriter(failing, max_queue=100, interval=60)
    for _ in range(5):
        writer.record(record(DAY1, None, "m", "b"))
    await writer.flush()  # the database is down: nothing written, nothing lost
    assert (writer.written, writer.queued, writer.dropped) == (0, 1, 0)
    writer.record(record(DAY1, None, "m", "b"))
    await writer.flush()
    (row,) = await store.query(UsageQuery(by="model"))
    assert row.requests == 6 and writer.written == 6


class FailingOnce:
    def __init__(self, store: SqlUsageStore) -> None:
        self.store = store
        self.failed = False

    async def insert(self, batch: list[UsageRecord]) -> None:
        if not self.failed:
            self.failed = True
            raise OSError("connection refused")
        await self.store.insert(batch)

    async def query(self, query: UsageQuery) -> list[UsageTotals]:
        return await self.store.query(query)


async def test_a_full_writer_queue_drops_and_counts_without_waiting(database: Database) -> None:
    writer = UsageWriter(
        SqlUsageStore(database), per_request=True, max_queue=10, batch_size=100, interval=60
    )
    for _ in range(25):
        writer.record(record(DAY1, None, "m", "b"))  # never awaits: the queue is a deque
    assert (writer.queued, writer.dropped) == (10, 15)
    await writer.flush()
    assert writer.queued == 0
    (row,) = await SqlUsageStore(database).query(UsageQuery(by="model"))
    assert row.requests == 10


async def test_a_batch_reaching_batch_size_wakes_the_writer(database: Database) -> None:
    writer = UsageWriter(
        SqlUsageStore(database), per_request=True, max_queue=100, batch_size=5, interval=3600
    )
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


async def test_rows_of_a_key_deleted_before_the_write_are_kept_without_it(
    database: Database,
) -> None:
    ci, gone = await make_key(database, "ci"), await make_key(database, "gone")
    writer = UsageWriter(SqlUsageStore(database), max_queue=100, interval=60)
    writer.record(record(DAY1, ci, "m", "b"))
    writer.record(record(DAY1, gone, "m", "b"))
    await SqlKeyStore(database).delete(gone)  # its last request ended a moment ago
    await writer.flush()
    assert (writer.written, writer.queued) == (2, 0)
    rows = {r.group: r.requests for r in await SqlUsageStore(database).query(UsageQuery())}
    assert rows == {str(ci): 1, None: 1}


async def test_a_model_name_longer_than_its_column_is_cut_not_refused(database: Database) -> None:
    writer = UsageWriter(SqlUsageStore(database), max_queue=100, interval=60)
    writer.record(record(DAY1, None, "m" * 400, "b"))  # a client may name any model at all
    writer.record(record(DAY1, None, "llama3.2:latest", "b"))
    await writer.flush()
    assert (writer.written, writer.queued) == (2, 0)
    models = {r.group: r.requests for r in await SqlUsageStore(database).query(UsageQuery(by="model"))}
    assert models == {"m" * 255: 1, "llama3.2:latest": 1}
