"""Stopping background tasks: each is cancelled and has ended when ``cancel`` returns."""

from __future__ import annotations

import asyncio

from corral.tasks import cancel


async def test_cancel_ends_every_task_and_skips_none() -> None:
    forever = asyncio.get_running_loop().create_task(asyncio.Event().wait())
    finished = asyncio.get_running_loop().create_task(asyncio.sleep(0))
    await finished
    await cancel(None, forever, finished)
    assert forever.cancelled() and finished.done() and not finished.cancelled()
