"""Key-change notices over Redis pub/sub: every subscriber hears a change, and only its own
prefix's; a Redis that is down never fails the change itself."""

from __future__ import annotations

import asyncio
import logging

import pytest

from corral.auth.notices import NoNotices, notices_for
from corral.auth.redis_notices import RedisNotices
from corral.settings import Settings
from tests.stores.backing import RedisSpace


async def heard(events: list[str], count: int) -> None:
    for _ in range(500):
        if len(events) >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"heard {len(events)} notices, expected {count}")


async def test_every_subscriber_hears_a_change(redis_space: RedisSpace) -> None:
    channel = redis_space.prefix + "keys"
    one, two, sender = (RedisNotices(redis_space.url, channel) for _ in range(3))
    events: dict[str, list[str]] = {"one": [], "two": []}
    try:
        await one.start(lambda: events["one"].append("x"))
        await two.start(lambda: events["two"].append("x"))
        await asyncio.wait_for(one.subscribed.wait(), 10)
        await asyncio.wait_for(two.subscribed.wait(), 10)
        # Subscribing counts as a notice: changes made while away are looked for at once.
        await heard(events["one"], 1)
        await heard(events["two"], 1)
        await sender.publish()
        await heard(events["one"], 2)
        await heard(events["two"], 2)
    finally:
        for notices in (one, two, sender):
            await notices.aclose()


async def test_another_prefix_is_another_channel(redis_space: RedisSpace) -> None:
    listener = RedisNotices(redis_space.url, redis_space.prefix + "keys")
    stranger = RedisNotices(redis_space.url, redis_space.prefix + "other:keys")
    events: list[str] = []
    try:
        await listener.start(lambda: events.append("x"))
        await asyncio.wait_for(listener.subscribed.wait(), 10)
        await heard(events, 1)
        await stranger.publish()
        await listener.publish()
        await heard(events, 2)
        await asyncio.sleep(0)
        assert len(events) == 2
    finally:
        await listener.aclose()
        await stranger.aclose()


async def test_a_redis_that_is_down_only_logs(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    notices = RedisNotices("redis://127.0.0.1:1/0", "corral:keys")
    caplog.set_level(logging.WARNING, logger="corral")
    monkeypatch.setattr(logging.getLogger("corral"), "propagate", True)
    try:
        await notices.publish()
    finally:
        await notices.aclose()
    assert "cannot publish a key notice" in caplog.text


def test_without_redis_there_is_nothing_to_publish() -> None:
    assert isinstance(notices_for(Settings()), NoNotices)
    assert isinstance(notices_for(Settings(redis_url="redis://h:6379/0")), RedisNotices)
