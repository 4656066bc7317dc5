"""Simulators on real ports, and corral in front of them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from corral.testing.simulator import Simulator
from tests.stores.backing import redis_space

__all__ = ["redis_space", "start_sim"]

StartSim = Callable[..., Awaitable[Simulator]]


@pytest.fixture
async def start_sim() -> AsyncIterator[StartSim]:
    """Start as many simulators as a test needs; all are closed after it."""
    started: list[Simulator] = []

    async def start(**options: object) -> Simulator:
        options.setdefault("tokens_per_second", 2000.0)
        options.setdefault("first_token_delay", 0.0)
        sim = Simulator(**options)  # type: ignore[arg-type]
        await sim.start("127.0.0.1", 0)
        started.append(sim)
        return sim

    yield start
    for sim in started:
        await sim.aclose()


@pytest.fixture
async def sim(start_sim: StartSim) -> Simulator:
    return await start_sim()
