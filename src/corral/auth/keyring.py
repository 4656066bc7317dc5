"""Every stored key in memory, by digest, so that verifying a key never waits on the database.

The ring holds a snapshot of the key table. It reloads the snapshot when the key revision (one
number the store bumps on every change) moves: checked every ``interval`` seconds, and at once
when a notice arrives (Redis pub/sub from another instance or the CLI), or when this instance
changed a key itself. A key revoked anywhere is therefore refused everywhere within ``interval``
seconds, and within milliseconds when Redis is configured.

Example::

    ring = KeyRing(store, interval=2.0)
    await ring.start()              # first load; then refreshes in the background
    entry = ring.entries.get(digest)
    await ring.aclose()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from sqlalchemy.exc import SQLAlchemyError

from corral.auth.principal import Principal
from corral.storage.keys import KeyRecord, KeyStore
from corral.tasks import cancel

log = logging.getLogger("corral.auth")


@dataclass(frozen=True, slots=True)
class KeyEntry:
    """What verification needs of one key, precomputed. ``expires_at`` is epoch seconds."""

    digest: bytes
    principal: Principal
    revoked: bool = False
    active: bool = True
    expires_at: float | None = None


def entry_for(record: KeyRecord) -> KeyEntry:
    principal = Principal.for_models(
        record.id,
        record.name,
        record.models,
        rpm=record.rpm,
        tpm=record.tpm,
        max_concurrency=record.max_concurrency,
    )
    expires = record.expires_at.timestamp() if record.expires_at is not None else None
    return KeyEntry(record.digest, principal, record.revoked_at is not None, record.active, expires)


class KeyRing:
    """The in-memory copy of the key table (see the module docstring)."""

    def __init__(self, store: KeyStore, *, interval: float) -> None:
        self.store = store
        self.interval = interval
        self.entries: dict[bytes, KeyEntry] = {}
        self.revision = -1
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self.entries)

    async def load(self) -> None:
        revision, records = await self.store.snapshot()
        # One assignment: a request sees the old table or the new one, never half of each.
        self.entries = {record.digest: entry_for(record) for record in records}
        self.revision = revision

    async def refresh(self) -> bool:
        """Reload if the key table changed since the last load; whether it did."""
        if await self.store.revision() == self.revision:
            return False
        await self.load()
        return True

    def notify(self) -> None:
        """Keys changed somewhere: refresh now rather than at the next interval."""
        self._wake.set()

    async def start(self) -> None:
        await self.load()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="key-ring")

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)
            self._wake.clear()
            try:
                await self.refresh()
            except (SQLAlchemyError, OSError) as exc:
                # Keep serving from the last good copy; the next round tries again.
                log.warning("cannot refresh API keys: %s", type(exc).__name__)

    async def aclose(self) -> None:
        await cancel(self._task)
        self._task = None
