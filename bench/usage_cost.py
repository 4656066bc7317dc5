"""What usage accounting costs a corral process per request: ``RequestAccounting.finished`` (the
one call the gateway makes when a request ends) and the writer's share, rows inserted into a
real SQLite database by the background writer, as CPU time of the whole process (the driver's
thread included), per granularity.

    $ python -m bench.usage_cost
    usage off:               0.35 µs CPU per request
    usage per minute:        1.10 µs CPU per request
    usage per request:      12.40 µs CPU per request

The writer flushes as it would at ``RATE`` requests a second (scenario (a) of the benchmark):
per request when ``BATCH`` rows are waiting, per minute once every ``interval`` (a second).
Every request has the same key, model and backend, as in scenario (a).
"""

from __future__ import annotations

import asyncio
import resource
import tempfile
from pathlib import Path
from typing import Any

from corral.auth.keyformat import new_key
from corral.auth.principal import Principal
from corral.observability.accounting import RequestAccounting
from corral.observability.usage_writer import UsageWriter
from corral.storage.engine import Database
from corral.storage.keys import KeySpec, SqlKeyStore
from corral.storage.usage import SqlUsageStore

REQUESTS = 100_000
BATCH = 500  # the writer's default batch size
RATE = 8_000  # requests a second


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def per_request(accounting: RequestAccounting, requests: int, key_id: int) -> float:
    """Mean µs of CPU per request, recording and writing."""
    state: dict[str, Any] = {
        "principal": Principal(key_id, "ci"),
        "model": "llama3.2",
        "backend": "gpu1",
        "prompt_tokens": 26,
        "generated_tokens": 298,
    }
    entry = {
        "request_id": "9f2c1a7e00000001",
        "client": "127.0.0.1",
        "route": "/api/chat",
        "status": 200,
        "duration_ms": 812.5,
        "ttfb_ms": 151.2,
    }
    finished = accounting.finished
    writer = accounting.usage
    every = BATCH if writer is None or writer.per_request else int(RATE * writer.interval)
    started = cpu_seconds()
    for _ in range(requests // every):
        for _ in range(every):
            finished(state, entry)
        if writer is not None:
            await writer.flush()
    return (cpu_seconds() - started) / requests * 1e6


async def measure(granularity: str | None, directory: Path) -> float:
    if granularity is None:
        return await per_request(RequestAccounting(None, None), REQUESTS, 1)
    database = Database(f"sqlite:///{directory / granularity}.db")
    await database.start()
    try:
        issued = new_key()
        key = await SqlKeyStore(database).create(
            KeySpec(name="ci"), prefix=issued.prefix, digest=issued.digest
        )
        writer = UsageWriter(
            SqlUsageStore(database), per_request=granularity == "request", batch_size=BATCH
        )
        accounting = RequestAccounting(writer, None)
        await per_request(accounting, RATE, key.id)  # warm up
        return await per_request(accounting, REQUESTS, key.id)
    finally:
        await database.aclose()


async def run() -> None:
    with tempfile.TemporaryDirectory(prefix="corral-usage-cost-") as tmp:
        for label, granularity in (("off", None), ("per minute", "minute"),
                                   ("per request", "request")):  # fmt: skip
            cost = await measure(granularity, Path(tmp))
            print(f"usage {label + ':':<18} {cost:6.2f} µs CPU per request")


def main() -> None:
    asyncio.run(run())


if __name__ == "__main__":
    main()
