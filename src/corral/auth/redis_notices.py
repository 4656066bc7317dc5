"""Key-change notices over Redis pub/sub (see :mod:`corral.auth.notices`).

Example::

    notices = RedisNotices("redis://127.0.0.1:6379/0", "corral:keys")
    await notices.start(ring.notify)
    await notices.subscribed.wait()
    await notices.publish()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from redis.asyncio import Redis
from redis.exceptions import RedisError

from corral.tasks import cancel

log = logging.getLogger("corral.auth")

_MESSAGE = b"changed"
# Seconds between two attempts to subscribe again after Redis went away.
RETRY_SECONDS = 1.0


class RedisNotices:
    """Key-change notices over Redis pub/sub. ``subscribed`` is set once messages can arrive."""

    def __init__(self, url: str, channel: str) -> None:
        self.channel = channel
        self._redis: Redis = Redis.from_url(url)
        self._task: asyncio.Task[None] | None = None
        self.subscribed = asyncio.Event()

    async def start(self, on_notice: Callable[[], None]) -> None:
        self._task = asyncio.get_running_loop().create_task(
            self._listen(on_notice), name="key-notices"
        )

    async def _listen(self, on_notice: Callable[[], None]) -> None:
        while True:
            pubsub = self._redis.pubsub()
            try:
                await pubsub.subscribe(self.channel)
                self.subscribed.set()
                # Changes made while this instance was not subscribed were missed: look now.
                on_notice()
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        on_notice()
            except (RedisError, OSError) as exc:
                self.subscribed.clear()
                log.warning("key notices from Redis interrupted: %s", type(exc).__name__)
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()
            await asyncio.sleep(RETRY_SECONDS)

    async def publish(self) -> None:
        try:
            await self._redis.publish(self.channel, _MESSAGE)
        except (RedisError, OSError) as exc:
            # Not fatal: other instances still see the change at their next poll.
            log.warning("cannot publish a key notice to Redis: %s", type(exc).__name__)

    async def aclose(self) -> None:
        await cancel(self._task)
        self._task = None
        await self._redis.aclose()
