"""Per-key counters: counted in memory, written in one batch, kept when the write fails."""

from __future__ import annotations

from corral.auth.activity import KeyActivity
from tests.auth.fakes import FakeClock, MemoryKeyStore


async def test_requests_and_tokens_are_written_in_one_batch() -> None:
    store = MemoryKeyStore()
    clock = FakeClock(1_800_000_000.0)
    activity = KeyActivity(store, interval=60, clock=clock)
    activity.used(1)
    activity.used(1)
    clock.now += 5
    activity.used(2)
    activity.add_tokens(1, 40)
    activity.add_tokens(3, 7)
    assert store.calls == []  # nothing is written per request
    await activity.flush()
    (batch,) = store.activity
    assert (batch[1].requests, batch[1].tokens) == (2, 40)
    assert batch[1].last_used_at.timestamp() == 1_800_000_000.0
    assert (batch[2].requests, batch[2].last_used_at.timestamp()) == (1, 1_800_000_005.0)
    assert (batch[3].requests, batch[3].tokens) == (0, 7)
    await activity.flush()
    assert len(store.activity) == 1  # nothing new, nothing written


async def test_counts_survive_a_failed_write() -> None:
    store = MemoryKeyStore()
    activity = KeyActivity(store, interval=60, clock=FakeClock())
    activity.used(1)
    store.fail_activity = True
    await activity.flush()
    activity.used(1)
    store.fail_activity = False
    await activity.aclose()
    (batch,) = store.activity
    assert batch[1].requests == 2
