"""corral as the benchmark runs it: one backend, room for every stream, access log on.

The access log stays on, written to ``/dev/null``: formatting and writing its lines is part of
what a request costs, so it is measured; only the terminal is spared. With ``--stats-file``,
corral's garbage-collector pauses (:mod:`bench.gcpauses`) are written there as JSON on exit.
``SIGUSR1`` switches recording off and on, ``SIGUSR2`` limits on and off (:class:`Modes`); with
``--modes-file``, the modes in force are written there after each switch.

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
from bench.procs import SWITCH_LIMITS, SWITCH_RECORDING, redis_url
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


def _skip_recording(self: Gateway, *args: object, **kwargs: object) -> None:
    return None


_RECORDING = Gateway.record


class Modes:
    """Recording (access log line, usage record, request metric at the end of each request)
    and limits (a request limit and a token budget per client address, in memory), switched
    on and off by :data:`SWITCH_RECORDING` and :data:`SWITCH_LIMITS`. After each switch the
    modes in force are written to ``path`` as JSON, for the benchmark to see it took effect."""

    def __init__(self, app: App, path: Path | None, *, recording: bool, limits: bool) -> None:
        self.app = app
        self.path = path
        self.recording = recording
        self.limits = limits
        self._apply()

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.add_signal_handler(SWITCH_RECORDING, self.switch_recording)
        loop.add_signal_handler(SWITCH_LIMITS, self.switch_limits)

    def switch_recording(self) -> None:
        self.recording = not self.recording
        self._apply()

    def switch_limits(self) -> None:
        self.limits = not self.limits
        self._apply()

    def _apply(self) -> None:
        Gateway.record = _RECORDING if self.recording else _skip_recording  # type: ignore[method-assign]
        self.app.services.limits.configure(LIMITS if self.limits else LimitSettings())
        if self.path is not None:
            self.path.write_text(json.dumps({"recording": self.recording, "limits": self.limits}))


async def serve(settings: Settings, access_log: BinaryIO, modes_file: Path | None) -> None:
    configure_logging(settings.log_level)
    app = App(settings, access_log=AccessLog(stream=access_log))
    recording = os.environ.get("BENCH_RECORDING", "on") != "off"
    limits = os.environ.get("BENCH_LIMITS", "off") in ("memory", "redis")
    modes = Modes(app, modes_file, recording=recording, limits=limits)
    await app.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    modes.install(loop)
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
    parser.add_argument(
        "--modes-file", type=Path, help="write the modes in force here at each switch"
    )
    args = parser.parse_args(argv)
    pauses = GcPauses()
    pauses.install()
    with open(os.devnull, "wb") as devnull, contextlib.suppress(KeyboardInterrupt):
        uvloop.run(serve(bench_settings(args.port, args.backend), devnull, args.modes_file))
    if args.stats_file is not None:
        args.stats_file.write_text(json.dumps({"gc": pauses.summary()}))


if __name__ == "__main__":
    main()
