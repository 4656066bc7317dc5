"""The key store: API keys in the database, by their SHA-256 digest, never their plaintext.

Every change that matters to verification (create, update, revoke, delete) bumps the single
``key_revision`` row in the same transaction, so an instance learns that its in-memory copy is
stale by reading one number (see :class:`corral.auth.keyring.KeyRing`).

Example::

    store = SqlKeyStore(database)
    record = await store.create(KeySpec(name="ci"), prefix="corral_AbC12xYz", digest=digest)
    await store.revoke(record.id)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from corral.storage.engine import Database
from corral.storage.key_records import (
    UNSET,
    Activity,
    KeyChanges,
    KeyNameTaken,
    KeyNotFound,
    KeyRecord,
    KeySpec,
    Unset,
    describe,
)
from corral.storage.schema import api_keys, key_revision

# The values travel with the store: callers import both from here.
__all__ = [
    "UNSET",
    "Activity",
    "KeyChanges",
    "KeyNameTaken",
    "KeyNotFound",
    "KeyRecord",
    "KeySpec",
    "KeyStore",
    "SqlKeyStore",
    "Unset",
    "describe",
]


Records = list[KeyRecord]


class KeyStore(Protocol):
    """Keys by id, name, prefix or digest; the interface of DESIGN.md §5."""

    async def create(self, spec: KeySpec, *, prefix: str, digest: bytes) -> KeyRecord: ...
    async def get(self, key_id: int) -> KeyRecord | None: ...
    async def get_by_name(self, name: str) -> KeyRecord | None: ...
    async def get_by_digest(self, digest: bytes) -> KeyRecord | None: ...
    async def find_by_prefix(self, prefix: str) -> Records: ...
    async def list(self) -> Records: ...
    async def update(self, key_id: int, changes: KeyChanges) -> KeyRecord: ...
    async def revoke(self, key_id: int) -> KeyRecord: ...
    async def delete(self, key_id: int) -> KeyRecord: ...
    async def revision(self) -> int: ...
    async def snapshot(self) -> tuple[int, Records]: ...
    async def record_activity(self, batch: Mapping[int, Activity]) -> None: ...


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _record(row: sa.Row[Any]) -> KeyRecord:
    m = row._mapping
    models = m["models"]
    return KeyRecord(
        id=m["id"],
        name=m["name"],
        description=m["description"],
        prefix=m["prefix"],
        digest=bytes.fromhex(m["digest"]),
        created_at=m["created_at"],
        updated_at=m["updated_at"],
        last_used_at=m["last_used_at"],
        expires_at=m["expires_at"],
        revoked_at=m["revoked_at"],
        active=bool(m["active"]),
        models=tuple(models) if models is not None else None,
        rpm=m["rpm"],
        tpm=m["tpm"],
        max_concurrency=m["max_concurrency"],
        request_count=m["request_count"],
        token_count=m["token_count"],
    )


def _column_values(values: Mapping[str, Any]) -> dict[str, Any]:
    if "models" in values and values["models"] is not None:
        return {**values, "models": list(values["models"])}
    return dict(values)


_BUMP = (
    key_revision.update().where(key_revision.c.id == 1).values(version=key_revision.c.version + 1)
)


# The store's SQL, as functions of a connection: Database.run calls each in one transaction on
# a database thread, Database.read on a connection that commits nothing.


def _select(conn: sa.Connection, condition: sa.ColumnElement[bool]) -> Records:
    rows = conn.execute(sa.select(api_keys).where(condition).order_by(api_keys.c.id)).all()
    return [_record(row) for row in rows]


def _select_one(conn: sa.Connection, condition: sa.ColumnElement[bool]) -> KeyRecord | None:
    found = _select(conn, condition)
    return found[0] if found else None


def _must_get(conn: sa.Connection, key_id: int) -> KeyRecord:
    record = _select_one(conn, api_keys.c.id == key_id)
    if record is None:
        raise KeyNotFound(f"no key with id {key_id}")
    return record


def _insert(conn: sa.Connection, values: Mapping[str, Any]) -> KeyRecord:
    result = conn.execute(api_keys.insert().values(dict(values)))
    conn.execute(_BUMP)
    key_id = result.inserted_primary_key
    assert key_id is not None
    return _must_get(conn, int(key_id[0]))


def _write(conn: sa.Connection, key_id: int, values: Mapping[str, Any]) -> KeyRecord:
    result = conn.execute(api_keys.update().where(api_keys.c.id == key_id).values(dict(values)))
    if result.rowcount == 0:
        raise KeyNotFound(f"no key with id {key_id}")
    conn.execute(_BUMP)
    return _must_get(conn, key_id)


def _revoke(conn: sa.Connection, key_id: int, now: datetime) -> KeyRecord:
    record = _must_get(conn, key_id)
    if record.revoked_at is not None:
        return record
    return _write(conn, key_id, {"revoked_at": now, "updated_at": now})


def _delete(conn: sa.Connection, key_id: int) -> KeyRecord:
    record = _must_get(conn, key_id)
    conn.execute(api_keys.delete().where(api_keys.c.id == key_id))
    conn.execute(_BUMP)
    return record


def _revision(conn: sa.Connection) -> int:
    return int(conn.scalar(sa.select(key_revision.c.version)) or 0)


def _snapshot(conn: sa.Connection) -> tuple[int, Records]:
    return _revision(conn), _select(conn, sa.true())


_ADD_ACTIVITY = (
    api_keys.update()
    .where(api_keys.c.id == sa.bindparam("key_id"))
    .values(
        request_count=api_keys.c.request_count + sa.bindparam("requests"),
        token_count=api_keys.c.token_count + sa.bindparam("tokens"),
        last_used_at=sa.case(
            (api_keys.c.last_used_at.is_(None), sa.bindparam("used_at")),
            (api_keys.c.last_used_at < sa.bindparam("used_at"), sa.bindparam("used_at")),
            else_=api_keys.c.last_used_at,
        ),
    )
)


def _add_activity(conn: sa.Connection, rows: list[dict[str, Any]]) -> None:
    conn.execute(_ADD_ACTIVITY, rows)


class SqlKeyStore:
    """The key store on SQLite or PostgreSQL; every method is one transaction."""

    def __init__(self, database: Database, *, now: Callable[[], datetime] = _utcnow) -> None:
        self.database = database
        self.now = now

    async def create(self, spec: KeySpec, *, prefix: str, digest: bytes) -> KeyRecord:
        now = self.now()
        values = _column_values(
            {
                "name": spec.name,
                "description": spec.description,
                "prefix": prefix,
                "digest": digest.hex(),
                "created_at": now,
                "updated_at": now,
                "expires_at": spec.expires_at,
                "active": True,
                "models": spec.models,
                "rpm": spec.rpm,
                "tpm": spec.tpm,
                "max_concurrency": spec.max_concurrency,
            }
        )
        try:
            return await self.database.run(_insert, values)
        except IntegrityError:
            raise KeyNameTaken(f"a key named {spec.name!r} already exists") from None

    async def get(self, key_id: int) -> KeyRecord | None:
        return await self.database.read(_select_one, api_keys.c.id == key_id)

    async def get_by_name(self, name: str) -> KeyRecord | None:
        return await self.database.read(_select_one, api_keys.c.name == name)

    async def get_by_digest(self, digest: bytes) -> KeyRecord | None:
        return await self.database.read(_select_one, api_keys.c.digest == digest.hex())

    async def find_by_prefix(self, prefix: str) -> Records:
        return await self.database.read(_select, api_keys.c.prefix == prefix)

    async def list(self) -> Records:
        return await self.database.read(_select, sa.true())

    async def update(self, key_id: int, changes: KeyChanges) -> KeyRecord:
        values = _column_values(changes.values())
        if not values:
            return await self.database.read(_must_get, key_id)
        try:
            return await self.database.run(_write, key_id, {**values, "updated_at": self.now()})
        except IntegrityError:
            raise KeyNameTaken(f"a key named {values.get('name')!r} already exists") from None

    async def revoke(self, key_id: int) -> KeyRecord:
        return await self.database.run(_revoke, key_id, self.now())

    async def delete(self, key_id: int) -> KeyRecord:
        return await self.database.run(_delete, key_id)

    async def revision(self) -> int:
        return await self.database.read(_revision)

    async def snapshot(self) -> tuple[int, Records]:
        """The revision and every key, read together (one transaction, one consistent view)."""
        return await self.database.run(_snapshot)

    async def record_activity(self, batch: Mapping[int, Activity]) -> None:
        """Add each key's counts and move its last use forward; one transaction per batch.

        The revision is not bumped: counters do not change what a key may do.
        """
        if not batch:
            return
        rows = [
            {
                "key_id": key_id,
                "requests": a.requests,
                "tokens": a.tokens,
                "used_at": a.last_used_at,
            }
            for key_id, a in sorted(batch.items())  # one lock order for concurrent writers
        ]
        await self.database.run(_add_activity, rows)
