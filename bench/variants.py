"""Other corrals for scenario (a): the default corral with one setting of ``bench/run_corral.py``
changed, each its own process in front of the same simulator.

A variant runs in every round of (a) beside the default corral (the corrals take turns at going
first), so its ratio to the default is the median of per-round ratios measured seconds apart, as
corral's to direct is. A variant that
needs what this machine lacks (Redis) is not started, and its rows say why.

Example::

    with started(VARIANTS, sim, bench) as (services, skipped):
        runs = alternate(bench, sim, corral, measure, services)
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from redis import Redis
from redis.exceptions import RedisError

from bench.procs import (
    SWITCH_LIMITS,
    SWITCH_RECORDING,
    Service,
    Switched,
    redis_url,
    start_corral,
)
from bench.rounds import Bench, prime

PROBE_TIMEOUT = 1.0


@dataclass(frozen=True, slots=True)
class Variant:
    name: str
    """Its label in the rounds (and the JSON results), and its name in a profile."""
    env: dict[str, str]
    """What differs from the default corral's environment (``bench.procs.CORRAL_ENV``)."""
    needs_redis: bool = False
    switch: tuple[int, str] | None = None
    """A mode of the default corral instead of a process: the signal that switches it, and the
    mode's name (``bench.run_corral.Modes``)."""

    def unavailable(self) -> str | None:
        """Why this variant cannot run here, or None."""
        return redis_unreachable(redis_url()) if self.needs_redis else None


VARIANTS = {
    variant.name: variant
    for variant in (
        # Switched in the default corral's own process: two processes of the same code differ
        # here by more than these costs (see the "default-again" row).
        Variant("limits-memory", {}, switch=(SWITCH_LIMITS, "limits")),
        Variant("limits-redis", {"BENCH_LIMITS": "redis"}, needs_redis=True),
        Variant("recording-off", {}, switch=(SWITCH_RECORDING, "recording")),
        # The default corral again, in a process of its own: how far two processes of the same
        # code differ in one run, the noise floor of comparisons between processes.
        Variant("default-again", {}),
    )
}


def redis_unreachable(url: str) -> str | None:
    """None if a Redis at ``url`` answers PING; else what to say instead of its figures."""
    try:
        client = Redis.from_url(
            url, socket_timeout=PROBE_TIMEOUT, socket_connect_timeout=PROBE_TIMEOUT
        )
        try:
            client.ping()
        finally:
            client.close()
    except (RedisError, OSError, ValueError):
        return f"Redis unreachable at {without_password(url)}"
    return None


def without_password(url: str) -> str:
    """``url`` fit for a report: a password in it becomes ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port is not None else ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}{port}"))


@contextmanager
def started(
    names: Iterable[str], sim: Service, corral: Service, bench: Bench
) -> Iterator[tuple[dict[str, Service], dict[str, str]]]:
    """The named variants' corrals in front of ``sim``, primed, by name (a switched mode of
    ``corral`` for some); and those that could not run here, with why. The corrals started here
    stop on the way out."""
    services: dict[str, Service] = {}
    skipped: dict[str, str] = {}
    with ExitStack() as stops:
        for name in names:
            variant = VARIANTS[name]
            reason = variant.unavailable()
            if reason is not None:
                skipped[name] = reason
                continue
            if variant.switch is not None:
                services[name] = Switched(f"corral ({name})", corral, *variant.switch)
                continue
            service = start_corral(
                sim.url, bench.pinning.corral, env=variant.env, name=f"corral ({name})"
            )
            stops.callback(service.stop)
            prime(service)
            services[name] = service
        yield services, skipped
