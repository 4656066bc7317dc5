"""Webhook subscriptions in the database: where to send which events, and the secret that signs
them.

The secret must be readable to sign with, so it is stored as it is; it is shown to a person once,
at creation, and never listed afterwards.

Example::

    store = SqlWebhookStore(database)
    hook = await store.create("https://example.com/hook", ("key.created",), secret="whsec_...")
    await store.delete(hook.id)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from corral.errors import BadRequest, NotFound
from corral.storage.engine import Database
from corral.storage.schema import webhooks

EVENTS = (
    "request.completed",
    "key.created",
    "key.revoked",
    "backend.down",
    "backend.up",
    "limit.exceeded",
    "model.loaded",
)
# request.completed fires once per request: a subscriber asks for it by name.
DEFAULT_EVENTS = tuple(event for event in EVENTS if event != "request.completed")


class WebhookNotFound(NotFound):
    pass


def check_url(url: str) -> str:
    """An http(s) URL with a host."""
    from urllib.parse import urlsplit

    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadRequest("a webhook URL must be http:// or https:// with a host")
    return url


def check_events(events: Sequence[str] | str | None) -> tuple[str, ...]:
    """``"key.created, backend.down"``, a list, ``"*"`` (every event) or ``None`` (the
    default: every event but request.completed)."""
    if events is None:
        return DEFAULT_EVENTS
    items = events.split(",") if isinstance(events, str) else events
    if not all(isinstance(item, str) for item in items):
        raise BadRequest("events must be event names")
    names = tuple(dict.fromkeys(item.strip() for item in items if item.strip()))
    if names == ("*",):
        return EVENTS
    unknown = [name for name in names if name not in EVENTS]
    if unknown or not names:
        raise BadRequest(f"events are some of: {', '.join(EVENTS)} (or *)")
    return names


@dataclass(frozen=True, slots=True)
class WebhookRecord:
    id: int
    url: str
    events: tuple[str, ...]
    active: bool
    created_at: datetime
    secret: str = field(repr=False)

    def wants(self, event: str) -> bool:
        return self.active and event in self.events

    def describe(self) -> dict[str, Any]:
        """As JSON for the admin API and ``--json``: without the secret."""
        return {
            "id": self.id,
            "url": self.url,
            "events": list(self.events),
            "active": self.active,
            "created_at": self.created_at.isoformat().replace("+00:00", "Z"),
        }


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _record(row: sa.Row[Any]) -> WebhookRecord:
    m = row._mapping
    events = m["events"]
    return WebhookRecord(
        id=m["id"],
        url=m["url"],
        events=tuple(events) if events is not None else DEFAULT_EVENTS,
        active=bool(m["active"]),
        created_at=m["created_at"],
        secret=m["secret"],
    )


def _select(conn: sa.Connection, webhook_id: int) -> WebhookRecord | None:
    row = conn.execute(sa.select(webhooks).where(webhooks.c.id == webhook_id)).first()
    return None if row is None else _record(row)


def _select_all(conn: sa.Connection) -> list[WebhookRecord]:
    return [_record(row) for row in conn.execute(sa.select(webhooks).order_by(webhooks.c.id))]


def _insert(conn: sa.Connection, values: dict[str, Any]) -> WebhookRecord:
    key = conn.execute(webhooks.insert().values(values)).inserted_primary_key
    assert key is not None
    found = _select(conn, int(key[0]))
    assert found is not None
    return found


def _delete(conn: sa.Connection, webhook_id: int, *, cascade: bool) -> WebhookRecord:
    found = _select(conn, webhook_id)
    if found is None:
        raise WebhookNotFound(f"no webhook with id {webhook_id}")
    if cascade:
        from corral.storage.schema import webhook_outbox

        conn.execute(webhook_outbox.delete().where(webhook_outbox.c.webhook_id == webhook_id))
    conn.execute(webhooks.delete().where(webhooks.c.id == webhook_id))
    return found


class SqlWebhookStore:
    """The ``webhooks`` table on SQLite or PostgreSQL."""

    def __init__(self, database: Database, *, now: Callable[[], datetime] = _utcnow) -> None:
        self.database = database
        self.now = now

    async def create(self, url: str, events: Sequence[str], *, secret: str) -> WebhookRecord:
        values = {
            "url": url,
            "events": list(events),
            "secret": secret,
            "active": True,
            "created_at": self.now(),
        }
        return await self.database.run(_insert, values)

    async def get(self, webhook_id: int) -> WebhookRecord | None:
        return await self.database.read(_select, webhook_id)

    async def list(self) -> list[WebhookRecord]:
        return await self.database.read(_select_all)

    async def delete(self, webhook_id: int) -> WebhookRecord:
        """Remove the subscription and, with it, its undelivered outbox entries."""
        # SQLite cascades only with foreign_keys=ON, which a hand-opened file may lack.
        return await self.database.run(_delete, webhook_id, cascade=self.database.is_sqlite)
