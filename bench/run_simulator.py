"""The Ollama simulator as the benchmark runs it: ``corral simulate``, minus the cyclic collector.

The simulator stands in for Ollama, a Go server whose collector never stops it for long. Python's
cyclic collector would: with 500 live streams a generation-2 pass takes the simulator 10-20 ms,
which lands at random in the direct and the corral figures alike and drowns the p99 of what
corral adds. The simulator's garbage is acyclic (14 objects found by the collector over 50,000
requests), so reference counting frees all of it and turning the collector off costs no memory.
corral keeps its collector: its pauses are part of what corral costs.

Example::

    python -m bench.run_simulator --port 11434 --tokens-per-second 20 --first-token-ms 0
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import signal
from collections.abc import Sequence

import uvloop

from corral.testing.simulator import Simulator


async def serve(
    port: int, models: list[str], tokens_per_second: float, first_token_ms: float
) -> None:
    # num_predict sets each answer's length exactly: the scenarios choose their load by it.
    simulator = Simulator(
        models,
        tokens_per_second=tokens_per_second,
        first_token_delay=first_token_ms / 1000,
        exact_lengths=True,
    )
    await simulator.start("127.0.0.1", port)
    gc.collect()
    gc.disable()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await simulator.aclose()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.run_simulator", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--models", default="llama3.2", help="comma-separated")
    parser.add_argument("--tokens-per-second", type=float, required=True)
    parser.add_argument("--first-token-ms", type=float, default=0.0)
    args = parser.parse_args(argv)
    models = [name.strip() for name in args.models.split(",") if name.strip()]
    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(serve(args.port, models, args.tokens_per_second, args.first_token_ms))


if __name__ == "__main__":
    main()
