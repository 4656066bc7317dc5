"""corral as the benchmark runs it: one backend, room for every stream, access log on.

The access log stays on, written to ``/dev/null``: formatting and writing its lines is part of
what a request costs, so it is measured; only the terminal is spared. With ``--stats-file``,
corral's garbage-collector pauses (:mod:`bench.gcpauses`) are written there as JSON on exit.

Example::

    python -m bench.run_corral --port 8080 --backend http://127.0.0.1:11434
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

import uvloop

from bench.gcpauses import GcPauses
from bench.procs import redis_url
from corral.app import App
from corral.http.proxy import Gateway
from corral.observability.logs import AccessLog, configure_logging
from corral.settings import BackendSettings, LimitSettings, ScopeLimits, Settings

# Far above the 500 streams of the largest scenario: the benchmark measures the relay, not the
# queue in front of a busy backend.
MAX_CONCURRENCY = 1024
QUEUE_SIZE = 10_000


# BENCH_LIMITS=memory (or redis, at BENCH_REDIS_URL) turns on a request limit and a token budget
# per client address, far above what the load reaches: what checking them costs. Scenario (a)
# runs a corral of each kind beside the default one (bench/variants.py).
LIMITS = LimitSettings(ip=ScopeLimits(requests=10**9, tokens_per_minute=10**12))


def bench_settings(port: int, backend: str) -> Settings:
    limits = os.environ.get("BENCH_LIMITS", "off")
    return Settings(
        port=port,
        backends=[BackendSettings(url=backend, max_concurrency=MAX_CONCURRENCY)],
        queue_size=QUEUE_SIZE,
        log_level="warning",
        # A fresh database: keys in the developer's ./data would answer every request 401.
        data_dir=Path(tempfile.mkdtemp(prefix="corral-bench-")),
        limits=LIMITS if limits in ("memory", "redis") else LimitSettings(),
        redis_url=redis_url() if limits == "redis" else None,
        redis_prefix=f"corral-bench-{os.getpid()}:",
        cache_mode="off" if limits == "redis" else "deterministic",
    )


def without_recording() -> None:
    """No access log line, usage record or request metric at the end of a request: what
    corral's throughput would be without them (``BENCH_RECORDING=off``)."""

    def skip(self: Gateway, *args: object, **kwargs: object) -> None:
        return None

    Gateway._log = skip  # type: ignore[method-assign]


async def serve(settings: Settings, access_log: BinaryIO) -> None:
    configure_logging(settings.log_level)
    if os.environ.get("BENCH_RECORDING", "on") == "off":
        without_recording()
    app = App(settings, access_log=AccessLog(stream=access_log))
    await app.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await app.aclose()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.run_corral", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--backend", required=True, help="the simulator's URL")
    parser.add_argument("--stats-file", type=Path, help="write GC pauses here on exit")
    args = parser.parse_args(argv)
    pauses = GcPauses()
    pauses.install()
    with open(os.devnull, "wb") as devnull, contextlib.suppress(KeyboardInterrupt):
        uvloop.run(serve(bench_settings(args.port, args.backend), devnull))
    if args.stats_file is not None:
        args.stats_file.write_text(json.dumps({"gc": pauses.summary()}))


if __name__ == "__main__":
    main()
