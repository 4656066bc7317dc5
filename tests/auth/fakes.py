"""Small fakes for the auth unit tests: a key store in memory, and a clock the test moves."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime

from corral.auth.keyformat import IssuedKey, new_key
from corral.storage.keys import (
    Activity,
    KeyChanges,
    KeyNotFound,
    KeyRecord,
    KeySpec,
)

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


class FakeClock:
    """Epoch seconds that only move when the test says so."""

    def __init__(self, now: float | None = None) -> None:
        self.now = EPOCH.timestamp() if now is None else now

    def __call__(self) -> float:
        return self.now


class MemoryKeyStore:
    """The KeyStore interface over a dict; counts calls so tests can see who touched it."""

    def __init__(self) -> None:
        self.records: dict[int, KeyRecord] = {}
        self.version = 0
        self.calls: list[str] = []
        self.activity: list[Mapping[int, Activity]] = []
        self.fail_activity = False

    def add(self, name: str = "ci", **spec: object) -> tuple[KeyRecord, IssuedKey]:
        issued = new_key()
        key_id = max(self.records, default=0) + 1
        s = KeySpec(name=name, **spec)  # type: ignore[arg-type]
        record = KeyRecord(
            id=key_id, name=s.name, description=s.description, prefix=issued.prefix,
            digest=issued.digest, created_at=EPOCH, updated_at=EPOCH, last_used_at=None,
            expires_at=s.expires_at, revoked_at=None, active=True, models=s.models, rpm=s.rpm,
            tpm=s.tpm, max_concurrency=s.max_concurrency, request_count=0, token_count=0,
        )  # fmt: skip
        self.records[key_id] = record
        self.version += 1
        return record, issued

    def change(self, key_id: int, **fields: object) -> None:
        self.records[key_id] = replace(self.records[key_id], **fields)  # type: ignore[arg-type]
        self.version += 1

    async def revision(self) -> int:
        self.calls.append("revision")
        return self.version

    async def snapshot(self) -> tuple[int, list[KeyRecord]]:
        self.calls.append("snapshot")
        return self.version, list(self.records.values())

    async def record_activity(self, batch: Mapping[int, Activity]) -> None:
        self.calls.append("record_activity")
        if self.fail_activity:
            raise OSError("database went away")
        self.activity.append(dict(batch))

    async def create(self, spec: KeySpec, *, prefix: str, digest: bytes) -> KeyRecord:
        raise NotImplementedError

    async def get(self, key_id: int) -> KeyRecord | None:
        return self.records.get(key_id)

    async def update(self, key_id: int, changes: KeyChanges) -> KeyRecord:
        if key_id not in self.records:
            raise KeyNotFound(str(key_id))
        self.change(key_id, **changes.values())
        return self.records[key_id]
