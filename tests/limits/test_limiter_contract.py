"""Every Limiter keeps the same promises: memory with a fake clock, Redis for real."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from corral.limits.rate import Rate
from corral.limits.redis import RedisLimiter
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


# ---- hit_many: every check of a request at once, all or nothing ----------------------------


async def test_a_batch_that_fits_takes_every_check(timed: Timed) -> None:
    limiter = timed.limiter
    decisions = await limiter.hit_many(
        [("r", MINUTE, 1), ("t", Rate(1000, 60.0), 400), ("c", Rate(2, 3600.0, "concurrent"), 1)]
    )
    assert [(d.allowed, d.remaining) for d in decisions] == [(True, 2), (True, 600), (True, 1)]
    assert 59 <= decisions[1].reset_after <= 60
    assert [await limiter.usage(key) for key in ("r", "t", "c")] == [1, 400, 1]
    assert await limiter.usage_many(["r", "t", "c", "never"]) == [1, 400, 1, 0]


async def test_a_denial_on_the_second_check_leaves_the_first_untouched(timed: Timed) -> None:
    limiter, tokens = timed.limiter, Rate(100, 60.0)
    assert (await limiter.hit("r", MINUTE)).allowed
    assert (await limiter.hit("t", tokens, 90)).allowed
    decisions = await limiter.hit_many(
        [("r", MINUTE, 1), ("t", tokens, 20), ("c", Rate(5, 3600.0, "concurrent"), 1)]
    )
    assert [d.allowed for d in decisions] == [True, False]  # the third was not looked at
    assert decisions[1].remaining == 10
    assert 59 <= decisions[1].retry_after <= 60
    assert await limiter.usage_many(["r", "t", "c"]) == [1, 90, 0]
    # The first check's window kept its own end: not restarted by the undo.
    await timed.advance(61)
    assert await limiter.usage("r") == 0


async def test_a_denied_batch_leaves_fresh_keys_and_smooth_rates_as_they_were(
    timed: Timed,
) -> None:
    limiter, smooth, one = timed.limiter, Rate(1, 10.0, "smooth"), Rate(1, 60.0)
    assert (await limiter.hit("full", one)).allowed
    decisions = await limiter.hit_many(
        [("fresh", MINUTE, 1), ("s", smooth, 1), ("c", Rate(1, 3600.0, "concurrent"), 1),
         ("full", one, 1)]
    )  # fmt: skip
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert await limiter.usage_many(["fresh", "c"]) == [0, 0]
    # The smooth rate's one unit is still there to take.
    assert (await limiter.hit("s", smooth)).allowed


async def test_a_key_named_twice_in_a_batch_counts_both(timed: Timed) -> None:
    limiter = timed.limiter
    twice = await limiter.hit_many([("d", MINUTE, 2), ("d", MINUTE, 2)])
    assert [d.allowed for d in twice] == [True, False]
    assert await limiter.usage("d") == 0
    fits = await limiter.hit_many([("d", MINUTE, 2), ("d", MINUTE, 1)])
    assert [(d.allowed, d.remaining) for d in fits] == [(True, 1), (True, 0)]


async def test_an_empty_batch_decides_nothing(timed: Timed) -> None:
    assert await timed.limiter.hit_many([]) == []
    await timed.limiter.refund_many([])
    assert await timed.limiter.usage_many([]) == []


@pytest.mark.parametrize("binding", ["first", "second"])
async def test_fifty_concurrent_batches_on_a_limit_of_ten_let_exactly_ten_through(
    timed: Timed, binding: str
) -> None:
    """Ten fit, whichever check is the tight one; the forty denied take nothing anywhere."""
    requests = Rate(10, 60.0) if binding == "first" else Rate(1000, 60.0)
    tokens = Rate(10**6, 60.0) if binding == "first" else Rate(1000, 60.0)
    batch = [("req", requests, 1), ("tok", tokens, 1 if binding == "first" else 100)]
    decisions = await asyncio.gather(*(timed.limiter.hit_many(batch) for _ in range(50)))
    assert sum(all(d.allowed for d in ds) for ds in decisions) == 10
    assert sum(not ds[-1].allowed for ds in decisions) == 40
    used = await timed.limiter.usage_many(["req", "tok"])
    assert used == ([10, 10] if binding == "first" else [10, 1000])


async def test_refund_many_settles_every_check_at_once(timed: Timed) -> None:
    limiter, tokens, slots = timed.limiter, Rate(1000, 60.0), Rate(2, 3600.0, "concurrent")
    taken = await limiter.hit_many([("t", tokens, 600), ("c", slots, 1)])
    assert all(d.allowed for d in taken)
    await limiter.refund_many([("t", tokens, 500), ("c", slots, 1), ("new", tokens, -70)])
    assert await limiter.usage_many(["t", "c", "new"]) == [100, 0, 70]


@pytest.mark.parametrize("timed", ["redis"], indirect=True)  # round trips are a Redis matter
async def test_redis_takes_a_whole_batch_in_one_round_trip(
    timed: Timed, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert isinstance(timed.limiter, RedisLimiter)
    client = timed.limiter._client
    await timed.limiter.hit("warm", MINUTE)  # the script is loaded once, then run by its hash
    sent: list[object] = []
    execute = client.execute_command

    async def counted(*args: Any, **options: Any) -> Any:
        sent.append(args[0])
        return await execute(*args, **options)

    monkeypatch.setattr(client, "execute_command", counted)
    tokens, slot = Rate(100, 60.0), Rate(1, 3600.0, "concurrent")
    batch = [("r", MINUTE, 1), ("t", tokens, 50), ("c", slot, 1)]
    assert all(d.allowed for d in await timed.limiter.hit_many(batch))
    assert not (await timed.limiter.hit_many(batch))[-1].allowed
    await timed.limiter.refund_many([("t", tokens, 20), ("c", slot, 1)])
    assert sent == ["EVALSHA", "EVALSHA", "EVALSHA"]
