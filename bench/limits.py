"""What limits cost per request, without HTTP: microseconds per check.

    python -m bench.limits               # memory limiter, and Redis at BENCH_REDIS_URL if it runs

A check is one admission (a request limit and a token budget, per client address) and its
settlement, in a loop: what the limits stage adds to each request. Limits off is the cost of
deciding that no limit applies. Requests per second through corral with these limits on, in
memory and in Redis (at ``BENCH_REDIS_URL``), against limits off are rows of the benchmark's
scenario (a), measured in the same rounds::

    python -m bench --scenario a       # or --quick; the full run measures them too
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

import orjson

from bench.procs import redis_url
from corral.context import Call
from corral.http.limit_stage import LimitStage
from corral.http.messages import Headers, Request
from corral.limits.memory import MemoryLimiter
from corral.limits.rate import Limiter, LimiterUnavailable
from corral.limits.redis import RedisLimiter
from corral.observability.metrics import Metrics
from corral.settings import LimitSettings, ScopeLimits

LIMITS = LimitSettings(ip=ScopeLimits(requests=10**9, tokens_per_minute=10**12))
BODY = {"model": "llama3.2", "prompt": "Why is the sky blue?", "stream": False,
        "options": {"num_predict": 5}}  # fmt: skip


def _request() -> tuple[Call, Request]:
    body = orjson.dumps(BODY)
    call = Call("ollama", "/api/generate", "llama3.2", False, body, dict(BODY), "llama3.2:latest")
    request = Request("POST", "/api/generate", "", Headers([]), body, ("127.0.0.1", 1))
    request.state["client_ip"] = "127.0.0.1"
    return call, request


async def per_check(limiter: Limiter, rounds: int) -> float:
    """Microseconds per admission and settlement."""
    stage = LimitStage(limiter, LIMITS, Metrics())
    call, request = _request()
    started = time.perf_counter()
    for _ in range(rounds):
        _, admission = await stage.admit(call, request, [])
        admission.end(30)
    await stage.drain()
    elapsed = time.perf_counter() - started
    await stage.aclose()
    return elapsed / rounds * 1e6


def limits_off(rounds: int) -> float:
    stage = LimitStage(MemoryLimiter(), LimitSettings(), Metrics())
    started = time.perf_counter()
    for _ in range(rounds):
        stage.applies(None)
    return (time.perf_counter() - started) / rounds * 1e6


async def run(rounds: int) -> None:
    print(f"limits off:      {limits_off(rounds * 10):8.3f} us per request")
    print(f"memory limiter:  {await per_check(MemoryLimiter(), rounds):8.2f} us per check")
    redis = RedisLimiter.from_url(redis_url(), prefix=f"corral-bench-{os.getpid()}:limits:")
    try:
        print(f"redis limiter:   {await per_check(redis, rounds // 10):8.2f} us per check")
    except LimiterUnavailable as err:
        print(f"redis limiter:   not measured ({err})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=20000)
    args = parser.parse_args()
    asyncio.run(run(args.rounds))


if __name__ == "__main__":
    main()
