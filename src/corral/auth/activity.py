"""Each key's last use and its request and token counters, counted in memory and written to the
database in batches by one background task; a request never waits for the write.

Example::

    activity = KeyActivity(store, interval=5.0)
    activity.start()
    activity.used(key_id)             # per request: two additions in a dict
    activity.add_tokens(key_id, 512)  # when the answer ends
    await activity.aclose()           # writes what is left
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy.exc import SQLAlchemyError

from corral.storage.keys import Activity, KeyStore
from corral.tasks import cancel

log = logging.getLogger("corral.auth")


class KeyActivity:
    def __init__(
        self, store: KeyStore, *, interval: float, clock: Callable[[], float] = time.time
    ) -> None:
        self.store = store
        self.interval = interval
        self.clock = clock
        # key id -> [requests, tokens, last use in epoch seconds]; bounded by the number of keys.
        self._pending: dict[int, list[float]] = {}
        self._task: asyncio.Task[None] | None = None

    def used(self, key_id: int) -> None:
        counts = self._pending.get(key_id)
        if counts is None:
            self._pending[key_id] = [1, 0, self.clock()]
        else:
            counts[0] += 1
            counts[2] = self.clock()

    def add_tokens(self, key_id: int, tokens: int) -> None:
        counts = self._pending.get(key_id)
        if counts is None:
            self._pending[key_id] = [0, tokens, self.clock()]
        else:
            counts[1] += tokens

    async def flush(self) -> None:
        if not self._pending:
            return
        pending, self._pending = self._pending, {}
        batch = {
            key_id: Activity(int(n), int(tokens), datetime.fromtimestamp(last, UTC))
            for key_id, (n, tokens, last) in pending.items()
        }
        try:
            await self.store.record_activity(batch)
        except (SQLAlchemyError, OSError) as exc:
            log.warning("cannot write key usage counters: %s", type(exc).__name__)
            for key_id, (n, tokens, last) in pending.items():  # keep them for the next round
                counts = self._pending.setdefault(key_id, [0, 0, last])
                counts[0] += n
                counts[1] += tokens
                counts[2] = max(counts[2], last)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="key-activity")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self.flush()

    async def aclose(self) -> None:
        await cancel(self._task)
        self._task = None
        await self.flush()
