"""The webhook store and outbox contract, run against an SQLite file and a PostgreSQL database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from corral.errors import BadRequest
from corral.storage.engine import Database
from corral.storage.outbox import SqlOutbox
from corral.storage.webhooks import (
    DEFAULT_EVENTS,
    EVENTS,
    SqlWebhookStore,
    WebhookNotFound,
    check_events,
    check_url,
)

NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)
PAYLOAD = {"event": "key.created", "data": {"key": {"id": 1, "name": "ci"}}}


async def test_a_webhook_keeps_its_events_and_never_shows_its_secret(database: Database) -> None:
    store = SqlWebhookStore(database, now=lambda: NOW)
    hook = await store.create("http://127.0.0.1:9/hook", ("key.created",), secret="whsec_s3cret")
    assert (hook.url, hook.events, hook.active, hook.created_at) == (
        "http://127.0.0.1:9/hook", ("key.created",), True, NOW
    )
    assert hook.secret == "whsec_s3cret"
    assert "s3cret" not in repr(hook) and "s3cret" not in str(hook.describe())
    assert hook.wants("key.created") and not hook.wants("backend.down")
    assert [h.id for h in await store.list()] == [hook.id]
    assert (await store.delete(hook.id)).id == hook.id
    assert await store.list() == []
    with pytest.raises(WebhookNotFound):
        await store.delete(hook.id)


async def test_a_claimed_delivery_is_held_then_retried_then_delivered(database: Database) -> None:
    hook = await SqlWebhookStore(database).create("http://h/", EVENTS, secret="whsec_k")
    outbox = SqlOutbox(database)
    await outbox.enqueue([(hook.id, "key.created", PAYLOAD)], NOW)
    (item,) = await outbox.claim(NOW, hold=30, limit=10, max_attempts=5)
    assert (item.url, item.secret, item.payload, item.attempts) == ("http://h/", "whsec_k", PAYLOAD, 0)
    # Held: neither this nor another instance takes it again within the hold.
    assert await outbox.claim(NOW + timedelta(seconds=29), hold=30, limit=10, max_attempts=5) == []
    await outbox.failed(item.id, "answered 500", NOW + timedelta(seconds=2))
    assert await outbox.claim(NOW + timedelta(seconds=1), hold=30, limit=10, max_attempts=5) == []
    (again,) = await outbox.claim(NOW + timedelta(seconds=2), hold=30, limit=10, max_attempts=5)
    assert (again.id, again.attempts, again.last_error) == (item.id, 1, "answered 500")
    await outbox.delivered(item.id, NOW + timedelta(seconds=3))
    assert await outbox.claim(NOW + timedelta(days=1), hold=30, limit=10, max_attempts=5) == []
    (done,) = await outbox.list(hook.id)
    assert (done.attempts, done.delivered_at, done.last_error) == (
        2, NOW + timedelta(seconds=3), None
    )


async def test_a_held_claim_expires_so_a_stopped_instance_loses_nothing(database: Database) -> None:
    hook = await SqlWebhookStore(database).create("http://h/", EVENTS, secret="whsec_k")
    outbox = SqlOutbox(database)
    await outbox.enqueue([(hook.id, "backend.down", {"n": 1})], NOW)
    assert len(await outbox.claim(NOW, hold=30, limit=10, max_attempts=5)) == 1
    # The claimer stopped without a word: after the hold the row is due again.
    later = await outbox.claim(NOW + timedelta(seconds=31), hold=30, limit=10, max_attempts=5)
    assert [i.payload for i in later] == [{"n": 1}]


async def test_given_up_deliveries_and_deleted_webhooks_are_not_claimed(database: Database) -> None:
    store = SqlWebhookStore(database)
    keep = await store.create("http://keep/", EVENTS, secret="whsec_a")
    gone = await store.create("http://gone/", EVENTS, secret="whsec_b")
    outbox = SqlOutbox(database)
    await outbox.enqueue([(keep.id, "key.revoked", {}), (gone.id, "key.revoked", {})], NOW)
    await store.delete(gone.id)
    left = await database.read(lambda conn: conn.scalar(sa.text("SELECT count(*) FROM webhook_outbox")))
    assert left == 1
    (item,) = await outbox.claim(NOW, hold=0, limit=10, max_attempts=1)
    await outbox.failed(item.id, "timeout", NOW)
    assert await outbox.claim(NOW + timedelta(hours=1), hold=0, limit=10, max_attempts=1) == []


def test_urls_and_event_names_are_checked() -> None:
    assert check_url(" https://example.com/x ") == "https://example.com/x"
    for bad in ("ftp://example.com", "example.com", "http://"):
        with pytest.raises(BadRequest):
            check_url(bad)
    assert check_events(None) == DEFAULT_EVENTS and "request.completed" not in DEFAULT_EVENTS
    assert check_events("*") == EVENTS
    assert check_events("key.created, backend.down") == ("key.created", "backend.down")
    with pytest.raises(BadRequest):
        check_events("key.stolen")
