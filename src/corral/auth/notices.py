"""Telling every corral instance that keys changed, so each refreshes its key ring at once.

With Redis (``redis_url``), a change publishes one message on ``{redis_prefix}keys``; every
instance subscribes and reloads (:class:`corral.auth.redis_notices.RedisNotices`). The message
carries no key material, only "keys changed". Without Redis, :class:`NoNotices` does nothing and
instances rely on the key ring's polling.

Example::

    notices = notices_for(settings)
    await notices.start(ring.notify)   # subscribe (no-op without Redis)
    await notices.publish()            # after creating, updating, revoking or deleting a key
    await notices.aclose()
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from corral.settings import Settings


class KeyNotices(Protocol):
    async def start(self, on_notice: Callable[[], None]) -> None: ...
    async def publish(self) -> None: ...
    async def aclose(self) -> None: ...


class NoNotices:
    """No shared channel: other instances notice changes by polling (``auth.refresh_interval``)."""

    async def start(self, on_notice: Callable[[], None]) -> None:
        return None

    async def publish(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


def notices_for(settings: Settings) -> KeyNotices:
    if settings.redis_url is None:
        return NoNotices()
    # Imported here: a corral without Redis does not carry the client in memory.
    from corral.auth.redis_notices import RedisNotices

    return RedisNotices(settings.redis_url, settings.redis_prefix + "keys")
