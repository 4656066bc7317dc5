"""AdminService: the one set of admin operations behind the CLI, the shell and the admin API.

Every front end turns its input into these calls and their results into its output, so a key
created from the shell, the command line or ``POST /admin/keys`` is the same thing, validated by
the same rules. After every change the service refreshes this process's key ring and tells the
other instances (Redis), so a revocation takes effect everywhere.

Example::

    async with open_admin(settings) as admin:
        record, plaintext = await admin.create_key(KeySpec(name="ci", rpm=60))
        await admin.revoke_key("ci")
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from corral.auth.keyformat import PREFIX_LENGTH, key_digest, new_key
from corral.auth.notices import KeyNotices, notices_for
from corral.errors import BadRequest
from corral.settings import Settings, SettingsError
from corral.storage.engine import Database
from corral.storage.keys import KeyChanges, KeyNotFound, KeyRecord, KeySpec, KeyStore, SqlKeyStore

if TYPE_CHECKING:
    from corral.auth.keyring import KeyRing
    from corral.observability.webhooks import EventSink
    from corral.storage.outbox import OutboxItem, SqlOutbox
    from corral.storage.usage import SqlUsageStore, UsageQuery, UsageTotals
    from corral.storage.webhooks import SqlWebhookStore, WebhookRecord

log = logging.getLogger("corral.admin")

# Letters first; never all digits (a number is an id) nor key-shaped (that is a key).
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@:-]{0,63}")
_DURATION = re.compile(r"(\d+)\s*([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_NEVER = frozenset({"", "never", "none", "null"})
MAX_GENERATED = 100
# Settings a running corral takes on when it reloads (App.reload); the others need a restart.
LIVE_SETTINGS = frozenset(
    {
        "backends", "backend_max_concurrency", "queue_size", "max_queue_wait", "strategy",
        "cors_origins", "admin_token", "auth", "allow_ips", "deny_ips", "trusted_proxies",
        "cache_mode", "cache_ttl", "cache_max_entry_size",
    }
)  # fmt: skip


def utcnow() -> datetime:
    return datetime.now(UTC)


# ---- input rules, shared by every front end ----------------------------------------------------


def check_name(name: str) -> str:
    name = name.strip()
    if not _NAME.fullmatch(name) or name.isdigit() or name.startswith("corral_"):
        raise BadRequest(
            "a key name is 1-64 letters, digits or . _ @ : - (not only digits, not 'corral_...')"
        )
    return name


def parse_models(value: str | Sequence[str] | None) -> tuple[str, ...] | None:
    """``"llama3, qwen*"`` or a list -> names; empty or ``None``: every model."""
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else value
    if not all(isinstance(item, str) for item in items):
        raise BadRequest("models must be model names")
    models = tuple(dict.fromkeys(item.strip() for item in items if item.strip()))
    return models or None


def parse_limit(value: object, name: str) -> int | None:
    """A positive whole number; ``None``, ``"none"`` or ``0`` removes the limit."""
    if value is None or (isinstance(value, str) and value.strip().lower() in _NEVER):
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise BadRequest(f"{name} must be a whole number >= 0 (0 or 'none': no limit)")
    return value or None


def parse_expiry(value: object, now: datetime) -> datetime | None:
    """``"30d"``, ``"12h"``, ``"2027-01-31"``, an ISO time, or ``"never"``/``None``."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadRequest("expires must be a duration such as 30d, a date, or 'never'")
    text = value.strip().lower()
    if text in _NEVER:
        return None
    duration = _DURATION.fullmatch(text)
    if duration:
        return now + timedelta(seconds=int(duration[1]) * _UNITS[duration[2]])
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise BadRequest(
            "expires must be a duration (90m, 12h, 30d, 4w), a date or time (2027-01-31, "
            "2027-01-31T12:00:00Z), or 'never'"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


# ---- the service ------------------------------------------------------------------------------


class AdminService:
    """Key operations (by id, name, visible prefix or the key itself) and settings reload."""

    def __init__(
        self,
        store: KeyStore,
        notices: KeyNotices,
        *,
        keyring: KeyRing | None = None,
        reloader: SettingsReloader | None = None,
        now: Callable[[], datetime] = utcnow,
        events: EventSink | None = None,
        webhooks: SqlWebhookStore | None = None,
        usage: SqlUsageStore | None = None,
        outbox: SqlOutbox | None = None,
    ) -> None:
        self.store = store
        self.notices = notices
        self.keyring = keyring
        self.reloader = reloader
        self.now = now
        # Key events for webhooks; the webhook subscriptions; the usage records.
        self.events = events
        self.webhooks = webhooks
        self.usage = usage
        self.outbox = outbox

    async def create_key(self, spec: KeySpec) -> tuple[KeyRecord, str]:
        """A new key; the plaintext is returned here and nowhere else, ever."""
        spec = KeySpec(**{**_spec_fields(spec), "name": check_name(spec.name)})
        issued = new_key()
        record = await self.store.create(spec, prefix=issued.prefix, digest=issued.digest)
        await self._changed("created", record)
        return record, issued.plaintext

    async def generate_keys(self, count: int, description: str = "") -> list[tuple[KeyRecord, str]]:
        """Seed 004's ``generatekey(s)``: keys named after their visible prefix."""
        if not 1 <= count <= MAX_GENERATED:
            raise BadRequest(f"count must be between 1 and {MAX_GENERATED}")
        made = []
        for _ in range(count):
            issued = new_key()
            spec = KeySpec(
                name="key-" + issued.prefix.removeprefix("corral_"), description=description
            )
            record = await self.store.create(spec, prefix=issued.prefix, digest=issued.digest)
            made.append((record, issued.plaintext))
        await self._changed("created", *(record for record, _ in made))
        return made

    async def list_keys(self) -> list[KeyRecord]:
        return await self.store.list()

    async def show_key(self, ref: str) -> KeyRecord:
        return await self.resolve(ref)

    async def update_key(self, ref: str, changes: KeyChanges) -> KeyRecord:
        record = await self.resolve(ref)
        if isinstance(changes.name, str):
            changes = KeyChanges(**{**_spec_fields(changes), "name": check_name(changes.name)})
        updated = await self.store.update(record.id, changes)
        await self._changed("updated", updated)
        return updated

    async def revoke_key(self, ref: str) -> KeyRecord:
        record = await self.store.revoke((await self.resolve(ref)).id)
        await self._changed("revoked", record)
        return record

    async def delete_key(self, ref: str) -> KeyRecord:
        record = await self.store.delete((await self.resolve(ref)).id)
        await self._changed("deleted", record)
        if not await self.store.list():
            log.warning(
                "no API keys left: corral answers without a key again unless auth.required is set"
            )
        return record

    async def resolve(self, ref: str) -> KeyRecord:
        """An id (digits), a name, a visible prefix (``corral_AbCd1234``) or a whole key."""
        ref = ref.strip()
        record: KeyRecord | None
        if ref.isdigit():
            record = await self.store.get(int(ref))
        elif ref.startswith("corral_") and len(ref) > PREFIX_LENGTH:
            record = await self.store.get_by_digest(key_digest(ref))
            if record is None:
                # Never repeat what may be a real key in a message that could be logged.
                raise KeyNotFound("no stored key matches the key given")
        elif ref.startswith("corral_"):
            found = await self.store.find_by_prefix(ref)
            if len(found) > 1:
                raise BadRequest(f"{len(found)} keys start with {ref}; use the id or name")
            record = found[0] if found else None
        else:
            record = await self.store.get_by_name(ref)
        if record is None:
            raise KeyNotFound(f"no key with id or name {ref!r}")
        return record

    # ---- webhooks and usage ----------------------------------------------------------------

    async def add_webhook(
        self, url: str, events: Sequence[str] | str | None = None
    ) -> tuple[WebhookRecord, str]:
        """Subscribe ``url`` to ``events`` (default: all but request.completed); the signing
        secret is returned here and nowhere else."""
        from corral.observability.webhooks import new_secret
        from corral.storage.webhooks import check_events, check_url

        secret = new_secret()
        record = await self._webhooks().create(check_url(url), check_events(events), secret=secret)
        # Only the host: some receivers (chat services) put their own secret in the path.
        host = urlsplit(record.url).hostname
        log.info("webhook added", extra={"fields": {"webhook_id": record.id, "host": host}})
        return record, secret

    async def list_webhooks(self) -> list[WebhookRecord]:
        return await self._webhooks().list()

    async def delete_webhook(self, ref: str | int) -> WebhookRecord:
        text = str(ref).strip()
        if not text.isdigit():
            raise BadRequest("a webhook is named by its id (a number)")
        record = await self._webhooks().delete(int(text))
        log.info("webhook deleted", extra={"fields": {"webhook_id": record.id}})
        return record

    async def webhook_deliveries(self, webhook_id: int, limit: int = 100) -> list[OutboxItem]:
        """The newest deliveries to one webhook, made or owed."""
        if self.outbox is None:
            raise BadRequest("webhook deliveries are not available here")
        return await self.outbox.list(webhook_id, limit)

    async def usage_report(self, query: UsageQuery) -> list[UsageTotals]:
        if self.usage is None:
            raise BadRequest("usage records are not available here")
        return await self.usage.query(query)

    def _webhooks(self) -> SqlWebhookStore:
        if self.webhooks is None:
            raise BadRequest("webhooks are not available here")
        return self.webhooks

    async def reload_settings(self) -> dict[str, list[str]]:
        if self.reloader is None:
            raise BadRequest("this corral was not started from settings it can read again")
        try:
            return await self.reloader.reload()
        except SettingsError as exc:
            raise BadRequest("settings not reloaded: " + "; ".join(exc.problems)) from None

    async def _changed(self, what: str, *records: KeyRecord) -> None:
        for record in records:
            log.info(
                "API key %s",
                what,
                extra={"fields": {"key_id": record.id, "key_name": record.name,
                                  "key_prefix": record.prefix}},
            )  # fmt: skip
        if self.keyring is not None:
            await self.keyring.refresh()
        await self.notices.publish()
        if self.events is not None and what in ("created", "revoked"):
            for record in records:
                key = {"id": record.id, "name": record.name}  # never the key itself
                await self.events.publish(f"key.{what}", {"key": key})


def _spec_fields(value: KeySpec | KeyChanges) -> dict[str, Any]:
    return {name: getattr(value, name) for name in value.__dataclass_fields__}


class SettingsReloader:
    """Reads the settings again with ``load`` (the sources corral started from) and hands them
    to ``apply`` (App.reload); ``current`` gives the settings in force."""

    def __init__(
        self,
        current: Callable[[], Settings],
        load: Callable[[], Settings],
        apply: Callable[[Settings], Awaitable[None]],
    ) -> None:
        self.current = current
        self.load = load
        self.apply = apply

    async def reload(self) -> dict[str, list[str]]:
        """Apply the settings as their sources give them now; what was applied and what needs
        a restart. Invalid settings raise :class:`SettingsError` and change nothing."""
        settings = self.current()
        fresh = self.load()
        changed = [
            name for name in Settings.model_fields
            if getattr(fresh, name) != getattr(settings, name)
        ]  # fmt: skip
        await self.apply(fresh)
        report = {
            "applied": [name for name in changed if name in LIVE_SETTINGS],
            "restart_required": [name for name in changed if name not in LIVE_SETTINGS],
        }
        log.info("settings reloaded", extra={"fields": report})
        return report


@asynccontextmanager
async def open_admin(settings: Settings) -> AsyncIterator[AdminService]:
    """An AdminService straight on the database of ``settings``, for the CLI and the shell."""
    database = Database.from_settings(settings)
    await database.start()
    notices = notices_for(settings)
    from corral.observability.webhooks import OutboxPublisher
    from corral.storage.outbox import SqlOutbox
    from corral.storage.usage import SqlUsageStore
    from corral.storage.webhooks import SqlWebhookStore

    webhooks, outbox = SqlWebhookStore(database), SqlOutbox(database)
    try:
        yield AdminService(
            SqlKeyStore(database),
            notices,
            events=OutboxPublisher(webhooks, outbox),
            webhooks=webhooks,
            usage=SqlUsageStore(database),
            outbox=outbox,
        )
    finally:
        await notices.aclose()
        await database.aclose()
