"""The webhook outbox: every delivery owed, kept in the database until it is made.

An event becomes one row per subscribed webhook. The deliverer takes due rows (``claim``),
posts them, and marks each ``delivered`` or ``failed`` with the time of the next attempt. A
claim moves the row's next attempt forward first, so two corral instances sharing a database
do not post the same row at once, and a corral that stops in the middle leaves the row due
again after the claim expires: nothing owed is lost by a restart.

Example::

    outbox = SqlOutbox(database)
    await outbox.enqueue([(hook.id, "key.created", payload)], now)
    for item in await outbox.claim(now, hold=30.0, limit=50, max_attempts=10):
        ...
        await outbox.delivered(item.id, now)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from corral.storage.engine import Database
from corral.storage.schema import webhook_outbox, webhooks

Owed = tuple[int, str, dict[str, Any]]  # webhook id, event, payload


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """A delivery to make (or made): where, what, and how it went so far."""

    id: int
    webhook_id: int
    event: str
    payload: dict[str, Any]
    created_at: datetime
    attempts: int
    next_attempt_at: datetime
    delivered_at: datetime | None
    last_error: str | None
    url: str = ""
    secret: str = field(default="", repr=False)


def _item(row: sa.Row[Any]) -> OutboxItem:
    m = row._mapping
    return OutboxItem(
        id=m["id"],
        webhook_id=m["webhook_id"],
        event=m["event"],
        payload=m["payload"],
        created_at=m["created_at"],
        attempts=m["attempts"],
        next_attempt_at=m["next_attempt_at"],
        delivered_at=m["delivered_at"],
        last_error=m["last_error"],
        url=m.get("url", ""),
        secret=m.get("secret", ""),
    )


def _claim(conn: sa.Connection, statement: sa.Select[Any], until: datetime) -> list[OutboxItem]:
    table = webhook_outbox
    claimed: list[OutboxItem] = []
    for row in conn.execute(statement).all():
        item = _item(row)
        # Taken only if nobody moved it since it was read.
        result = conn.execute(
            table.update()
            .where(table.c.id == item.id, table.c.next_attempt_at == item.next_attempt_at)
            .values(next_attempt_at=until)
        )
        if result.rowcount == 1:
            claimed.append(item)
    return claimed


def _insert(conn: sa.Connection, rows: list[dict[str, Any]]) -> None:
    conn.execute(webhook_outbox.insert(), rows)


def _update(conn: sa.Connection, item_id: int, values: dict[str, Any]) -> None:
    conn.execute(webhook_outbox.update().where(webhook_outbox.c.id == item_id).values(values))


def _items(conn: sa.Connection, statement: sa.Select[Any]) -> list[OutboxItem]:
    return [_item(row) for row in conn.execute(statement)]


class SqlOutbox:
    """The ``webhook_outbox`` table on SQLite or PostgreSQL."""

    def __init__(self, database: Database) -> None:
        self.database = database

    async def enqueue(self, owed: Sequence[Owed], now: datetime) -> None:
        if not owed:
            return
        rows = [
            {
                "webhook_id": webhook_id,
                "event": event,
                "payload": payload,
                "created_at": now,
                "attempts": 0,
                "next_attempt_at": now,
            }
            for webhook_id, event, payload in owed
        ]
        await self.database.run(_insert, rows)

    async def claim(
        self, now: datetime, *, hold: float, limit: int, max_attempts: int
    ) -> list[OutboxItem]:
        """Due, undelivered rows of active webhooks, each held for ``hold`` seconds."""
        table = webhook_outbox
        statement = (
            sa.select(table, webhooks.c.url, webhooks.c.secret)
            .join(webhooks, webhooks.c.id == table.c.webhook_id)
            .where(
                table.c.delivered_at.is_(None),
                table.c.next_attempt_at <= now,
                table.c.attempts < max_attempts,
                webhooks.c.active.is_(True),
            )
            .order_by(table.c.next_attempt_at, table.c.id)
            .limit(limit)
        )
        return await self.database.run(_claim, statement, now + timedelta(seconds=hold))

    async def delivered(self, item_id: int, now: datetime) -> None:
        await self._set(
            item_id, attempts=webhook_outbox.c.attempts + 1, delivered_at=now, last_error=None
        )

    async def failed(self, item_id: int, error: str, next_attempt_at: datetime) -> None:
        await self._set(
            item_id,
            attempts=webhook_outbox.c.attempts + 1,
            last_error=error[:500],
            next_attempt_at=next_attempt_at,
        )

    async def list(self, webhook_id: int | None = None, limit: int = 100) -> list[OutboxItem]:
        """The newest deliveries, made or owed (for people and tests)."""
        statement = sa.select(webhook_outbox).order_by(webhook_outbox.c.id.desc()).limit(limit)
        if webhook_id is not None:
            statement = statement.where(webhook_outbox.c.webhook_id == webhook_id)
        return await self.database.read(_items, statement)

    async def _set(self, item_id: int, **values: Any) -> None:
        await self.database.run(_update, item_id, values)
