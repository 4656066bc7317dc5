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


class SqlKeyStore:
    """The key store on SQLite or PostgreSQL, through SQLAlchemy's async engine."""

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
            async with self.database.engine.begin() as conn:
                result = await conn.execute(api_keys.insert().values(values))
                await conn.execute(_BUMP)
        except IntegrityError:
            raise KeyNameTaken(f"a key named {spec.name!r} already exists") from None
        key_id = result.inserted_primary_key
        assert key_id is not None
        return await self._must_get(int(key_id[0]))

    async def get(self, key_id: int) -> KeyRecord | None:
        return await self._one(api_keys.c.id == key_id)

    async def get_by_name(self, name: str) -> KeyRecord | None:
        return await self._one(api_keys.c.name == name)

    async def get_by_digest(self, digest: bytes) -> KeyRecord | None:
        return await self._one(api_keys.c.digest == digest.hex())

    async def find_by_prefix(self, prefix: str) -> Records:
        return await self._many(api_keys.c.prefix == prefix)

    async def list(self) -> Records:
        return await self._many(sa.true())

    async def update(self, key_id: int, changes: KeyChanges) -> KeyRecord:
        values = _column_values(changes.values())
        if values:
            await self._write(key_id, {**values, "updated_at": self.now()})
        return await self._must_get(key_id)

    async def revoke(self, key_id: int) -> KeyRecord:
        record = await self._must_get(key_id)
        if record.revoked_at is None:
            now = self.now()
            await self._write(key_id, {"revoked_at": now, "updated_at": now})
        return await self._must_get(key_id)

    async def delete(self, key_id: int) -> KeyRecord:
        record = await self._must_get(key_id)
        async with self.database.engine.begin() as conn:
            await conn.execute(api_keys.delete().where(api_keys.c.id == key_id))
            await conn.execute(_BUMP)
        return record

    async def revision(self) -> int:
        async with self.database.engine.connect() as conn:
            version = await conn.scalar(sa.select(key_revision.c.version))
        return int(version or 0)

    async def snapshot(self) -> tuple[int, Records]:
        """The revision and every key, read together (one transaction, one consistent view)."""
        async with self.database.engine.begin() as conn:
            version = await conn.scalar(sa.select(key_revision.c.version))
            rows = (await conn.execute(sa.select(api_keys).order_by(api_keys.c.id))).all()
        return int(version or 0), [_record(row) for row in rows]

    async def record_activity(self, batch: Mapping[int, Activity]) -> None:
        """Add each key's counts and move its last use forward; one transaction per batch.

        The revision is not bumped: counters do not change what a key may do.
        """
        if not batch:
            return
        statement = (
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
        rows = [
            {
                "key_id": key_id,
                "requests": a.requests,
                "tokens": a.tokens,
                "used_at": a.last_used_at,
            }
            for key_id, a in sorted(batch.items())  # one lock order for concurrent writers
        ]
        async with self.database.engine.begin() as conn:
            await conn.execute(statement, rows)

    async def _write(self, key_id: int, values: Mapping[str, Any]) -> None:
        try:
            async with self.database.engine.begin() as conn:
                result = await conn.execute(
                    api_keys.update().where(api_keys.c.id == key_id).values(dict(values))
                )
                if result.rowcount == 0:
                    raise KeyNotFound(f"no key with id {key_id}")
                await conn.execute(_BUMP)
        except IntegrityError:
            raise KeyNameTaken(f"a key named {values.get('name')!r} already exists") from None

    async def _must_get(self, key_id: int) -> KeyRecord:
        record = await self.get(key_id)
        if record is None:
            raise KeyNotFound(f"no key with id {key_id}")
        return record

    async def _one(self, condition: sa.ColumnElement[bool]) -> KeyRecord | None:
        found = await self._many(condition)
        return found[0] if found else None

    async def _many(self, condition: sa.ColumnElement[bool]) -> Records:
        async with self.database.engine.connect() as conn:
            rows = (await conn.execute(sa.select(api_keys).where(condition).order_by("id"))).all()
        return [_record(row) for row in rows]
