"""Stopping the background tasks corral runs (refresh loops, flushers, health checks)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


async def cancel(*tasks: asyncio.Task[Any] | None) -> None:
    """Cancel ``tasks`` (``None`` ones are skipped) and wait until each has ended.

    Example::

        await cancel(self._task)
        self._task = None
    """
    running = [task for task in tasks if task is not None]
    for task in running:
        task.cancel()
    for task in running:
        with contextlib.suppress(asyncio.CancelledError):
            await task
