"""Flights: followers share the leader's answer; one leaving does not disturb the others."""

from __future__ import annotations

import asyncio

import pytest

from corral.cache.coalesce import Flights


async def test_followers_get_the_leaders_answer() -> None:
    flights: Flights[str] = Flights()
    flight = flights.lead("k")
    followers = [asyncio.create_task(flight.wait()) for _ in range(5)]
    await asyncio.sleep(0)  # let them start waiting
    assert flights.get("k") is flight and flight.followers == 5
    flights.land(flight, "answer")
    assert await asyncio.gather(*followers) == ["answer"] * 5
    assert flights.get("k") is None and len(flights) == 0


async def test_a_leader_with_nothing_to_share_lands_none() -> None:
    flights: Flights[str] = Flights()
    flight = flights.lead("k")
    waiting = asyncio.create_task(flight.wait())
    flights.land(flight, None)
    assert await waiting is None
    assert flights.get("k") is None


async def test_a_failed_leader_lets_its_followers_try_again() -> None:
    flights: Flights[str] = Flights()
    whole_but_unkept, failed = flights.lead("a"), flights.lead("b")
    flights.land(whole_but_unkept, None)
    flights.land(failed, None, retry=True)
    assert (whole_but_unkept.retry, failed.retry) == (False, True)


async def test_a_follower_that_leaves_does_not_cancel_the_others() -> None:
    flights: Flights[str] = Flights()
    flight = flights.lead("k")
    leaving = asyncio.create_task(flight.wait())
    staying = asyncio.create_task(flight.wait())
    await asyncio.sleep(0)
    leaving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leaving
    assert not flight.landed
    flights.land(flight, "answer")
    assert await staying == "answer"


async def test_landing_twice_keeps_the_first_answer_and_the_next_flight() -> None:
    flights: Flights[str] = Flights()
    first = flights.lead("k")
    flights.land(first, "one")
    second = flights.lead("k")
    flights.land(first, "two")  # late: must not end the new flight
    assert flights.get("k") is second
    assert await first.wait() == "one"
