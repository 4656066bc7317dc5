"""The admin API's usage report and webhook subscriptions (routed from :mod:`corral.http.admin`).

- ``GET /admin/usage?by=key|model|backend|day&since=7d&until=...&key=ID``: totals.
- ``GET /admin/webhooks``; ``POST /admin/webhooks`` ``{"url": ..., "events": [...]}`` (201, with
  the signing ``secret`` shown this once); ``GET|DELETE /admin/webhooks/{id}``;
  ``GET /admin/webhooks/{id}/deliveries``: the newest deliveries and how they went.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import orjson

from corral.errors import BadRequest, MethodNotAllowed, NotFound
from corral.http.messages import Request, Response
from corral.storage.usage import GROUPS, UsageQuery, parse_since

if TYPE_CHECKING:
    from corral.admin import AdminService
    from corral.storage.outbox import OutboxItem


def _allow(request: Request, *methods: str) -> None:
    if request.method not in methods:
        raise MethodNotAllowed(f"use {' or '.join(methods)}", allow=", ".join(methods))


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


async def usage_answer(service: AdminService, request: Request) -> Response:
    _allow(request, "GET", "HEAD")
    params = {name: values[-1] for name, values in parse_qs(request.query).items()}
    unknown = sorted(set(params) - {"by", "since", "until", "key"})
    if unknown:
        raise BadRequest(f"unknown parameter(s): {', '.join(unknown)}")
    by = params.get("by", "key")
    if by not in GROUPS:
        raise BadRequest(f"by must be one of {', '.join(GROUPS)}")
    now = service.now()
    key_id = None
    if "key" in params:
        key_id = (await service.resolve(params["key"])).id
    query = UsageQuery(
        by=by,  # type: ignore[arg-type]
        since=parse_since(params.get("since"), now),
        until=parse_since(params.get("until"), now),
        key_id=key_id,
    )
    rows = await service.usage_report(query)
    return Response.json(
        200,
        {
            "by": by,
            "since": _iso(query.since),
            "until": _iso(query.until),
            "rows": [row.as_dict() for row in rows],
        },
    )


def describe_delivery(item: OutboxItem) -> dict[str, Any]:
    return {
        "id": item.id,
        "webhook_id": item.webhook_id,
        "event": item.event,
        "created_at": _iso(item.created_at),
        "attempts": item.attempts,
        "next_attempt_at": _iso(item.next_attempt_at) if item.delivered_at is None else None,
        "delivered_at": _iso(item.delivered_at),
        "last_error": item.last_error,
    }


async def webhooks_answer(service: AdminService, request: Request, rest: list[str]) -> Response:
    if not rest:
        _allow(request, "GET", "HEAD", "POST")
        if request.method == "POST":
            payload = _json(request)
            unknown = sorted(set(payload) - {"url", "events"})
            if unknown:
                raise BadRequest(f"unknown field(s): {', '.join(unknown)}")
            url = payload.get("url")
            if not isinstance(url, str):
                raise BadRequest("url is required")
            record, secret = await service.add_webhook(url, payload.get("events"))
            return Response.json(201, {**record.describe(), "secret": secret})
        hooks = await service.list_webhooks()
        return Response.json(200, {"webhooks": [hook.describe() for hook in hooks]})
    if not rest[0].isdigit():
        raise NotFound(f"path {request.path!r} not found")
    webhook_id = int(rest[0])
    if rest[1:] == ["deliveries"]:
        _allow(request, "GET", "HEAD")
        items = await service.webhook_deliveries(webhook_id)
        return Response.json(200, {"deliveries": [describe_delivery(i) for i in items]})
    if len(rest) != 1:
        raise NotFound(f"path {request.path!r} not found")
    _allow(request, "GET", "HEAD", "DELETE")
    if request.method == "DELETE":
        return Response.json(200, (await service.delete_webhook(webhook_id)).describe())
    for hook in await service.list_webhooks():
        if hook.id == webhook_id:
            return Response.json(200, hook.describe())
    raise NotFound(f"no webhook with id {webhook_id}")


def _json(request: Request) -> dict[str, Any]:
    try:
        payload = orjson.loads(request.body or b"{}")
    except orjson.JSONDecodeError:
        raise BadRequest("the request body must be JSON") from None
    if not isinstance(payload, dict):
        raise BadRequest("the request body must be a JSON object")
    return payload
