"""Webhooks: events in, signed HTTP posts out, through the persistent outbox.

``emit(event, data)`` is a deque append, safe on a request's path. One background task moves
queued events into the outbox (a row per subscribed webhook) and posts the rows that are due;
a failed post is tried again after ``backoff(attempts)`` seconds, up to ``max_attempts``. The
rows live in the database, so deliveries owed when corral stops are made after it starts again.

Every post is signed with the webhook's own secret::

    X-Corral-Timestamp: 1795443712
    X-Corral-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>." + body, keyed by the secret>

and :func:`verify` checks one. Payloads name a key by id and name only, never by the key.

Example::

    hooks = Webhooks(SqlWebhookStore(database), SqlOutbox(database))
    hooks.start()
    hooks.emit("backend.down", {"backend": "gpu1"})
    await hooks.aclose()
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import secrets
import time
import uuid
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

import orjson
from sqlalchemy.exc import SQLAlchemyError

from corral.storage.outbox import OutboxItem, Owed, SqlOutbox
from corral.storage.webhooks import SqlWebhookStore, WebhookRecord
from corral.tasks import cancel

if TYPE_CHECKING:
    import httpx

    from corral.backends.backend import Backend

log = logging.getLogger("corral.webhooks")

SIGNATURE_HEADER = "X-Corral-Signature"
TIMESTAMP_HEADER = "X-Corral-Timestamp"
SECRET_PREFIX = "whsec_"
# How long a claimed delivery is held before another instance (or this one, restarted) may
# take it again: longer than any post can take.
CLAIM_SLACK = 30.0
# Seconds a stopping corral waits for posts under way.
SHUTDOWN_GRACE = 2.0


def new_secret() -> str:
    """A signing secret: 256 random bits."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=`` + the hex HMAC-SHA256 of ``timestamp + "." + body`` keyed by ``secret``.

    >>> signature("whsec_x", "1700000000", b"{}")[:15]
    'sha256=be8cb832'
    """
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(secret: str, timestamp: str, body: bytes, given: str) -> bool:
    """Whether ``given`` (the signature header) signs ``body`` sent at ``timestamp``."""
    return hmac.compare_digest(signature(secret, timestamp, body), given)


def default_backoff(attempts: int) -> float:
    """Seconds before the next try after ``attempts`` failures: 2, 4, 8... up to an hour."""
    return float(min(2 ** max(attempts, 1), 3600))


def utcnow() -> datetime:
    return datetime.now(UTC)


class EventSink(Protocol):
    """Where :class:`corral.admin.AdminService` tells about key changes."""

    async def publish(self, event: str, data: dict[str, Any]) -> None: ...


def envelope(event: str, data: dict[str, Any], at: datetime) -> dict[str, Any]:
    return {
        "id": uuid.uuid4().hex,
        "event": event,
        "created_at": at.isoformat().replace("+00:00", "Z"),
        "data": data,
    }


def owed_for(hooks: list[WebhookRecord], event: str, payload: dict[str, Any]) -> list[Owed]:
    return [(hook.id, event, payload) for hook in hooks if hook.wants(event)]


class OutboxPublisher:
    """Writes events straight into the outbox: for the CLI and the shell, where no corral
    runs; a running corral on the same database delivers them."""

    def __init__(
        self, store: SqlWebhookStore, outbox: SqlOutbox, *, clock: Callable[[], datetime] = utcnow
    ) -> None:
        self.store = store
        self.outbox = outbox
        self.clock = clock

    async def publish(self, event: str, data: dict[str, Any]) -> None:
        now = self.clock()
        owed = owed_for(await self.store.list(), event, envelope(event, data, now))
        await self.outbox.enqueue(owed, now)


class Webhooks:
    """The event queue and the deliverer of one corral process."""

    def __init__(
        self,
        store: SqlWebhookStore,
        outbox: SqlOutbox,
        *,
        max_pending: int = 10_000,
        interval: float = 1.0,
        timeout: float = 5.0,
        max_attempts: int = 10,
        backoff: Callable[[int], float] = default_backoff,
        clock: Callable[[], datetime] = utcnow,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.store = store
        self.outbox = outbox
        self.max_pending = max_pending
        self.interval = interval
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.clock = clock
        self.transport = transport
        # Whether any webhook subscribes to request.completed: the gateway skips the event
        # altogether otherwise. Refreshed every round.
        self.wants_requests = False
        self.any_active = True  # until the first round has read the webhooks
        # False: events still go into the outbox, another instance posts them.
        self.deliver = True
        self.dropped = 0
        self.delivered = 0
        self.failures = 0
        self._pending: deque[tuple[str, dict[str, Any], float]] = deque()
        self._wake = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._client: httpx.AsyncClient | None = None

    # ---- events in (never blocking) -------------------------------------------------------

    def emit(self, event: str, data: dict[str, Any], *, urgent: bool = True) -> None:
        if len(self._pending) >= self.max_pending:
            self.dropped += 1
            return
        self._pending.append((event, data, time.time()))
        if urgent:
            self._wake.set()

    async def publish(self, event: str, data: dict[str, Any]) -> None:
        self.emit(event, data)

    def backend_changed(self, backend: Backend, what: str) -> None:
        """``Backend.on_state_change``: ``what`` is ``up`` or ``down``."""
        self.emit(
            f"backend.{what}",
            {"backend": backend.name, "url": backend.url, "reason": backend.last_error},
        )

    def model_loaded(self, backend: Backend, model: str) -> None:
        """``Backend.on_model_loaded``: a response showed ``model`` newly loaded."""
        self.emit("model.loaded", {"backend": backend.name, "model": model}, urgent=False)

    # ---- the background round ---------------------------------------------------------------

    async def pump(self) -> int:
        """Move queued events into the outbox; returns how many deliveries that made."""
        hooks = await self.store.list()
        self.wants_requests = any(hook.wants("request.completed") for hook in hooks)
        # Deliveries go to active webhooks only: without one there is nothing to claim.
        self.any_active = any(hook.active for hook in hooks)
        owed: list[Owed] = []
        pending = self._pending
        while pending:
            event, data, at = pending.popleft()
            if any(hook.wants(event) for hook in hooks):
                moment = datetime.fromtimestamp(at, UTC)
                owed += owed_for(hooks, event, envelope(event, data, moment))
        await self.outbox.enqueue(owed, self.clock())
        return len(owed)

    async def deliver_due(self, limit: int = 50) -> int:
        """Post every due delivery once; returns how many were claimed."""
        items = await self.outbox.claim(
            self.clock(),
            hold=self.timeout + CLAIM_SLACK,
            limit=limit,
            max_attempts=self.max_attempts,
        )
        if items:
            await asyncio.gather(*(self._deliver(item) for item in items))
        return len(items)

    async def _deliver(self, item: OutboxItem) -> None:
        body = orjson.dumps(item.payload)
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "corral-webhooks",
            "X-Corral-Event": item.event,
            "X-Corral-Delivery": str(item.id),
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: signature(item.secret, timestamp, body),
        }
        import httpx  # only once there is something to deliver: it costs memory otherwise

        error: str | None = None
        try:
            response = await self._http().post(item.url, content=body, headers=headers)
            if not 200 <= response.status_code < 300:
                error = f"answered {response.status_code}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        now = self.clock()
        if error is None:
            self.delivered += 1
            await self.outbox.delivered(item.id, now)
            return
        self.failures += 1
        attempts = item.attempts + 1
        log.warning(
            "webhook %d delivery %d failed (attempt %d): %s",
            item.webhook_id,
            item.id,
            attempts,
            error,
        )
        retry_at = now + timedelta(seconds=self.backoff(attempts))
        await self.outbox.failed(item.id, error, retry_at)

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            import httpx

            self._client = httpx.AsyncClient(timeout=self.timeout, transport=self.transport)
        return self._client

    def start(self) -> None:
        if self._task is None:
            self._closing = False
            self._task = asyncio.get_running_loop().create_task(self._run(), name="webhooks")

    async def _run(self) -> None:
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)
            self._wake.clear()
            try:
                await self.pump()
                # No outbox claim (a write) every second on a corral without webhooks.
                while (
                    self.deliver
                    and self.any_active
                    and not self._closing
                    and await self.deliver_due()
                ):
                    pass
            except (SQLAlchemyError, OSError) as exc:
                log.warning("webhook round failed: %s", type(exc).__name__)

    async def aclose(self) -> None:
        """Stop delivering; what is still queued goes into the outbox for the next start."""
        self._closing = True
        self._wake.set()
        task, self._task = self._task, None
        if task is not None:
            # A receiver that never answers must not hold up shutdown; a post cut short here
            # stays claimed until its hold runs out, then is made again (at least once).
            done, _ = await asyncio.wait({task}, timeout=SHUTDOWN_GRACE)
            if not done:
                await cancel(task)
        try:
            await self.pump()
        except (SQLAlchemyError, OSError) as exc:
            log.warning("cannot keep %d webhook events: %s", len(self._pending), type(exc).__name__)
        if self._client is not None:
            await self._client.aclose()
            self._client = None
