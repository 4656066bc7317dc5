"""Admission: slots per backend, the bounded FIFO queue, deadlines, and leaving the queue."""

from __future__ import annotations

import asyncio

import pytest

from corral.backends.backend import Backend, BackendSpec, BackendState
from corral.errors import NoHealthyBackend, QueueFull, QueueTimeout
from corral.routing.balancer import LeastBusy, RoundRobin, make_balancer
from corral.routing.queue import Router


def backends(*slots: int) -> list[Backend]:
    return [Backend(BackendSpec(f"b{i}", "127.0.0.1", 1 + i, n)) for i, n in enumerate(slots)]


async def test_round_robin_takes_turns() -> None:
    fleet = backends(10, 10, 10)
    router = Router(fleet, RoundRobin())
    names = [(await router.acquire()).backend.name for _ in range(6)]
    assert names == ["b0", "b1", "b2", "b0", "b1", "b2"]


async def test_least_busy_prefers_the_emptiest_share() -> None:
    fleet = backends(2, 8)
    router = Router(fleet, LeastBusy())
    leases = [await router.acquire() for _ in range(8)]
    # b1 has four times the slots, so it takes most of the load.
    assert sum(1 for lease in leases if lease.backend.name == "b1") >= 6
    assert fleet[0].in_flight <= 2


async def test_lease_release_is_idempotent() -> None:
    fleet = backends(1)
    router = Router(fleet, RoundRobin())
    lease = await router.acquire()
    lease.release()
    lease.release()
    assert fleet[0].in_flight == 0


async def test_full_backends_queue_then_serve_in_fifo_order() -> None:
    fleet = backends(1)
    router = Router(fleet, RoundRobin(), queue_size=10, max_queue_wait=0)
    first = await router.acquire()
    order: list[int] = []

    async def wait(i: int) -> None:
        async with await router.acquire():
            order.append(i)

    tasks = [asyncio.create_task(wait(i)) for i in range(3)]
    while router.queued < 3:
        await asyncio.sleep(0)
    first.release()
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2]
    assert fleet[0].in_flight == 0


async def test_queue_full_is_503_with_retry_after() -> None:
    router = Router(backends(1), RoundRobin(), queue_size=1, max_queue_wait=0)
    await router.acquire()
    waiting = asyncio.create_task(router.acquire())
    while router.queued < 1:
        await asyncio.sleep(0)
    with pytest.raises(QueueFull) as err:
        await router.acquire()
    assert err.value.status == 503
    assert err.value.retry_after is not None and err.value.retry_after >= 1
    waiting.cancel()


async def test_queue_wait_has_a_deadline() -> None:
    router = Router(backends(1), RoundRobin(), queue_size=5, max_queue_wait=0.05)
    await router.acquire()
    with pytest.raises(QueueTimeout) as err:
        await router.acquire()
    assert err.value.status == 503
    assert router.queued == 0


async def test_cancelled_waiter_leaves_the_queue_and_loses_no_slot() -> None:
    fleet = backends(1)
    router = Router(fleet, RoundRobin(), queue_size=5, max_queue_wait=0)
    held = await router.acquire()
    waiter = asyncio.create_task(router.acquire())
    while router.queued < 1:
        await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert router.queued == 0
    held.release()
    assert fleet[0].in_flight == 0


async def test_slot_handed_to_a_waiter_that_just_left_is_passed_on() -> None:
    fleet = backends(1)
    router = Router(fleet, RoundRobin(), queue_size=5, max_queue_wait=0)
    held = await router.acquire()
    leaving = asyncio.create_task(router.acquire())
    staying = asyncio.create_task(router.acquire())
    while router.queued < 2:
        await asyncio.sleep(0)
    # Release (the slot goes to `leaving`) and cancel it in the same instant.
    held.release()
    leaving.cancel()
    lease = await staying
    assert lease.backend is fleet[0]
    with pytest.raises(asyncio.CancelledError):
        await leaving
    assert fleet[0].in_flight == 1


async def test_down_backends_are_skipped_and_an_all_down_fleet_is_503() -> None:
    fleet = backends(4, 4)
    fleet[0].state = BackendState.DOWN
    router = Router(fleet, RoundRobin())
    assert {(await router.acquire()).backend.name for _ in range(4)} == {"b1"}
    fleet[1].state = BackendState.DOWN
    with pytest.raises(NoHealthyBackend) as err:
        await router.acquire()
    assert err.value.status == 503
    assert err.value.retry_after is not None


async def test_excluding_every_backend_means_none_is_available() -> None:
    fleet = backends(1)
    router = Router(fleet, RoundRobin())
    with pytest.raises(NoHealthyBackend):
        await router.acquire(exclude=frozenset(fleet))


def test_unknown_strategy_is_named() -> None:
    with pytest.raises(ValueError, match="fastest"):
        make_balancer("fastest")
