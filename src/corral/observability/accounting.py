"""What the gateway records when a request ends: a usage record, and a ``request.completed``
event when some webhook asked for one. Both are appends to in-memory queues.

Example::

    accounting = RequestAccounting(usage_writer, webhooks)
    accounting.finished(request.state, entry)    # entry: the access-log line of the request
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from corral.backends.models import normalize_model

if TYPE_CHECKING:
    from corral.auth.principal import Principal
    from corral.observability.usage_writer import UsageWriter
    from corral.observability.webhooks import Webhooks
    from corral.settings import Settings
    from corral.storage.engine import Database


class RequestAccounting:
    def __init__(self, usage: UsageWriter | None, webhooks: Webhooks | None) -> None:
        self.usage = usage
        self.webhooks = webhooks

    def finished(self, state: dict[str, Any], entry: dict[str, Any]) -> None:
        """Record one API request that ended (answered, failed or cancelled).

        ``state`` is the request's state (its principal, tokens); ``entry`` its log line.
        """
        principal: Principal | None = state.get("principal")
        key_id = principal.key_id if principal is not None else None
        # As Ollama resolves it: "llama3.2" and "llama3.2:latest" are one model in a report.
        model = state.get("model")
        if model:
            model = normalize_model(model)
        usage = self.usage
        if usage is not None:
            usage.count(
                time.time(),
                entry["route"],
                entry["status"],
                key_id,
                model,
                state.get("backend"),
                entry["request_id"],
                entry["client"],
                state.get("prompt_tokens"),
                state.get("generated_tokens"),
                entry["duration_ms"],
                entry.get("ttfb_ms"),
                state.get("queue_ms"),
            )
        hooks = self.webhooks
        if hooks is not None and hooks.wants_requests:
            key = None if principal is None else {"id": key_id, "name": principal.name}
            data = {
                "request_id": entry["request_id"],
                "key": key,
                "route": entry["route"],
                "model": model,
                "backend": state.get("backend"),
                "status": entry["status"],
                "prompt_tokens": state.get("prompt_tokens"),
                "completion_tokens": state.get("generated_tokens"),
                "duration_ms": entry["duration_ms"],
            }
            hooks.emit("request.completed", data, urgent=False)


def open_recording(settings: Settings, database: Database) -> tuple[UsageWriter | None, Webhooks]:
    """The usage writer (``None`` when usage is off) and the webhooks of one corral process."""
    from corral.observability.usage_writer import UsageWriter
    from corral.observability.webhooks import Webhooks
    from corral.storage.outbox import SqlOutbox
    from corral.storage.usage import SqlUsageStore
    from corral.storage.webhooks import SqlWebhookStore

    given = settings.usage
    usage = None
    if given.enabled:
        usage = UsageWriter(
            SqlUsageStore(database),
            per_request=given.granularity == "request",
            max_queue=given.queue_size,
            batch_size=given.batch_size,
            interval=given.flush_interval,
        )
    hooks = settings.webhooks
    webhooks = Webhooks(
        SqlWebhookStore(database),
        SqlOutbox(database),
        max_pending=hooks.queue_size,
        interval=hooks.interval,
        timeout=hooks.timeout,
        max_attempts=hooks.max_attempts,
    )
    webhooks.deliver = hooks.enabled
    return usage, webhooks
