"""The key store contract, run against an SQLite file and a PostgreSQL database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from corral.auth.keyformat import new_key
from corral.storage.engine import Database
from corral.storage.keys import (
    Activity,
    KeyChanges,
    KeyNameTaken,
    KeyNotFound,
    KeySpec,
    SqlKeyStore,
)

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(database: Database, clock: Clock) -> SqlKeyStore:
    return SqlKeyStore(database, now=clock)


async def make(store: SqlKeyStore, name: str = "ci", **spec: object):  # type: ignore[no-untyped-def]
    issued = new_key()
    record = await store.create(
        KeySpec(name=name, **spec),  # type: ignore[arg-type]
        prefix=issued.prefix,
        digest=issued.digest,
    )
    return record, issued


async def test_created_key_is_stored_by_digest_and_never_by_plaintext(
    store: SqlKeyStore, database: Database
) -> None:
    record, issued = await make(store, "ci", description="build bot")
    assert record.name == "ci" and record.description == "build bot"
    assert record.prefix == issued.prefix and record.digest == issued.digest
    assert record.created_at == NOW and record.status(NOW) == "active"
    assert (record.request_count, record.token_count, record.last_used_at) == (0, 0, None)
    rows = await database.read(lambda conn: conn.execute(sa.text("SELECT * FROM api_keys")).all())
    assert issued.plaintext not in repr(rows)
    assert issued.plaintext[len(issued.prefix) :] not in repr(rows)


async def test_limits_models_and_expiry_round_trip(store: SqlKeyStore) -> None:
    expires = NOW + timedelta(days=30, microseconds=123)
    record, _ = await make(
        store,
        "limited",
        models=("llama3.2", "qwen*"),
        rpm=60,
        tpm=10_000,
        max_concurrency=2,
        expires_at=expires,
    )
    again = await store.get(record.id)
    assert again is not None
    assert again.models == ("llama3.2", "qwen*")
    assert (again.rpm, again.tpm, again.max_concurrency) == (60, 10_000, 2)
    assert again.expires_at == expires and again.expires_at.tzinfo is not None


async def test_lookups_by_id_name_digest_and_prefix(store: SqlKeyStore) -> None:
    record, issued = await make(store, "one")
    await make(store, "two")
    assert (await store.get(record.id)) == record
    assert (await store.get_by_name("one")) == record
    assert (await store.get_by_digest(issued.digest)) == record
    assert (await store.find_by_prefix(issued.prefix)) == [record]
    assert await store.get(999_999) is None
    assert await store.get_by_name("three") is None
    assert await store.get_by_digest(new_key().digest) is None
    assert [r.name for r in await store.list()] == ["one", "two"]


async def test_names_are_unique(store: SqlKeyStore) -> None:
    await make(store, "ci")
    with pytest.raises(KeyNameTaken):
        await make(store, "ci")
    other, _ = await make(store, "other")
    with pytest.raises(KeyNameTaken):
        await store.update(other.id, KeyChanges(name="ci"))


async def test_update_changes_only_what_is_given(store: SqlKeyStore, clock: Clock) -> None:
    record, _ = await make(store, "ci", rpm=60, models=("llama3.2",))
    clock.now = NOW + timedelta(minutes=5)
    updated = await store.update(record.id, KeyChanges(tpm=500, description="new"))
    assert (updated.rpm, updated.tpm, updated.description) == (60, 500, "new")
    assert updated.models == ("llama3.2",)
    assert updated.updated_at == clock.now
    cleared = await store.update(record.id, KeyChanges(rpm=None, models=None))
    assert (cleared.rpm, cleared.models, cleared.tpm) == (None, None, 500)
    disabled = await store.update(record.id, KeyChanges(active=False))
    assert disabled.status(clock.now) == "inactive"
    with pytest.raises(KeyNotFound):
        await store.update(999_999, KeyChanges(rpm=1))


async def test_revoke_is_permanent_and_expiry_is_a_status(
    store: SqlKeyStore, clock: Clock
) -> None:
    record, _ = await make(store, "ci", expires_at=NOW + timedelta(hours=1))
    assert record.status(NOW + timedelta(hours=2)) == "expired"
    revoked = await store.revoke(record.id)
    assert revoked.revoked_at == NOW and revoked.status(NOW) == "revoked"
    clock.now = NOW + timedelta(minutes=1)
    assert (await store.revoke(record.id)).revoked_at == NOW  # revoking again changes nothing
    reactivated = await store.update(record.id, KeyChanges(active=True))
    assert reactivated.status(clock.now) == "revoked"


async def test_delete_removes_the_key(store: SqlKeyStore) -> None:
    record, issued = await make(store, "ci")
    deleted = await store.delete(record.id)
    assert deleted.id == record.id
    assert await store.get_by_digest(issued.digest) is None
    with pytest.raises(KeyNotFound):
        await store.delete(record.id)


async def test_every_change_moves_the_revision(store: SqlKeyStore) -> None:
    seen = [await store.revision()]
    record, _ = await make(store, "ci")
    seen.append(await store.revision())
    await store.update(record.id, KeyChanges(rpm=5))
    seen.append(await store.revision())
    await store.revoke(record.id)
    seen.append(await store.revision())
    await store.delete(record.id)
    seen.append(await store.revision())
    assert seen == sorted(set(seen)), seen
    revision, records = await store.snapshot()
    assert revision == seen[-1] and records == []


async def test_activity_is_added_in_one_batch_without_moving_the_revision(
    store: SqlKeyStore,
) -> None:
    one, _ = await make(store, "one")
    two, _ = await make(store, "two")
    revision = await store.revision()
    later = NOW + timedelta(minutes=3)
    await store.record_activity(
        {one.id: Activity(3, 120, later), two.id: Activity(1, 0, NOW), 999_999: Activity(1, 1, NOW)}
    )
    await store.record_activity({one.id: Activity(2, 30, NOW)})  # an older last use
    one_now, two_now = await store.get(one.id), await store.get(two.id)
    assert one_now is not None and two_now is not None
    assert (one_now.request_count, one_now.token_count, one_now.last_used_at) == (5, 150, later)
    assert (two_now.request_count, two_now.last_used_at) == (1, NOW)
    assert await store.revision() == revision
