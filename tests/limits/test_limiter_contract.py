"""Every Limiter keeps the same promises: memory with a fake clock, Redis for real."""

from __future__ import annotations

import asyncio

import pytest

from corral.limits.rate import Rate
from tests.limits.conftest import Timed

MINUTE = Rate(3, 60.0)


async def test_a_fixed_window_allows_its_limit_then_denies_until_it_ends(timed: Timed) -> None:
    limiter = timed.limiter
    remaining = [(await limiter.hit("k", MINUTE)).remaining for _ in range(3)]
    assert remaining == [2, 1, 0]
    denied = await limiter.hit("k", MINUTE)
    assert not denied.allowed
    assert 59 <= denied.retry_after <= 60
    assert 59 <= denied.reset_after <= 60
    await timed.advance(61)
    again = await limiter.hit("k", MINUTE)
    assert again.allowed and again.remaining == 2


async def test_a_denied_hit_takes_nothing(timed: Timed) -> None:
    rate = Rate(100, 60.0)
    assert (await timed.limiter.hit("t", rate, 80)).allowed
    assert not (await timed.limiter.hit("t", rate, 30)).allowed
    fits = await timed.limiter.hit("t", rate, 20)
    assert fits.allowed and fits.remaining == 0


async def test_keys_are_counted_apart(timed: Timed) -> None:
    for _ in range(3):
        await timed.limiter.hit("a", MINUTE)
    assert not (await timed.limiter.hit("a", MINUTE)).allowed
    assert (await timed.limiter.hit("b", MINUTE)).allowed


async def test_a_refund_gives_units_back_and_a_negative_one_charges_more(timed: Timed) -> None:
    limiter, rate = timed.limiter, Rate(1000, 60.0)
    assert (await limiter.hit("tok", rate, 600)).allowed
    await limiter.refund("tok", rate, 500)  # reserved 600, used 100
    assert (await limiter.hit("tok", rate, 900)).remaining == 0
    await limiter.refund("tok", rate, -50)  # used 50 more than reserved
    assert not (await limiter.hit("tok", rate, 1)).allowed
    await limiter.refund("fresh", rate, -1200)  # a charge on a key never hit
    assert not (await limiter.hit("fresh", rate, 1)).allowed


async def test_a_smooth_rate_allows_a_burst_then_one_per_interval(timed: Timed) -> None:
    limiter, rate = timed.limiter, Rate(2, 1.0, "smooth")  # 2 per second, 2 at once
    assert (await limiter.hit("s", rate)).allowed
    assert (await limiter.hit("s", rate)).allowed
    denied = await limiter.hit("s", rate)
    assert not denied.allowed
    assert 0.3 <= denied.retry_after <= 0.5
    await timed.advance(0.5)
    assert (await limiter.hit("s", rate)).allowed
    assert not (await limiter.hit("s", rate)).allowed


async def test_a_smooth_rate_refund_lets_the_next_one_in(timed: Timed) -> None:
    limiter, rate = timed.limiter, Rate(1, 10.0, "smooth")
    assert (await limiter.hit("s", rate)).allowed
    assert not (await limiter.hit("s", rate)).allowed
    await limiter.refund("s", rate, 1)
    assert (await limiter.hit("s", rate)).allowed


async def test_concurrency_holds_until_given_back(timed: Timed) -> None:
    limiter, rate = timed.limiter, Rate(2, 3600.0, "concurrent")
    assert (await limiter.hit("c", rate)).allowed
    assert (await limiter.hit("c", rate)).allowed
    assert not (await limiter.hit("c", rate)).allowed
    await timed.advance(120)  # time alone frees nothing
    assert not (await limiter.hit("c", rate)).allowed
    await limiter.refund("c", rate, 1)
    assert (await limiter.hit("c", rate)).allowed


@pytest.mark.parametrize("rate", [Rate(10, 60.0), Rate(10, 60.0, "smooth")])
async def test_fifty_concurrent_hits_on_a_limit_of_ten_let_exactly_ten_through(
    timed: Timed, rate: Rate
) -> None:
    decisions = await asyncio.gather(*(timed.limiter.hit("burst", rate) for _ in range(50)))
    assert sum(d.allowed for d in decisions) == 10


async def test_usage_reports_what_is_counted(timed: Timed) -> None:
    limiter = timed.limiter
    assert await limiter.usage("u") == 0
    await limiter.hit("u", Rate(100, 60.0), 30)
    await limiter.hit("c", Rate(5, 3600.0, "concurrent"))
    assert await limiter.usage("u") == 30
    assert await limiter.usage("c") == 1
