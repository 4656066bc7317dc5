"""The admin API: the fleet view, draining backends, API keys, and the seed gateways' /config/*.

Protected by ``admin_token`` when it is set (``Authorization: Bearer <token>`` or
``X-Admin-Token``); without one, only clients on the same machine (loopback, after resolving
trusted proxies) may use it. A client API key never opens it.

- ``GET /admin/backends``: every backend's state, in-flight and queued requests, models,
  loaded models, recent latency.
- ``POST /admin/backends/{name}/drain``: no new requests; in-flight ones finish.
- ``POST /admin/backends/{name}/enable``: back in rotation.
- ``GET /admin/cache``: the response cache's size, hits, misses...; ``DELETE /admin/cache``
  forgets every cached answer (``{"cleared": n}``).
- ``GET /admin/keys``, ``POST /admin/keys`` (201, with the key shown this once),
  ``GET|PATCH|DELETE /admin/keys/{id or name}``, ``POST /admin/keys/{id or name}/revoke``.
- ``GET /admin/usage``, ``/admin/webhooks``...: see :mod:`corral.http.admin_recording`.
- ``GET /config/new-key`` (seed 001): creates a key and returns it; ``GET /config/reload``
  (seed 001; also ``POST /admin/reload``): reads the settings again.

Example::

    curl -H "Authorization: Bearer $CORRAL_ADMIN_TOKEN" -d '{"name": "ci", "rpm": 60}' \\
        http://127.0.0.1:8080/admin/keys
"""

from __future__ import annotations

import hmac
import ipaddress
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import orjson

from corral.admin import check_name, parse_expiry, parse_limit, parse_models
from corral.auth.keyring import entry_for
from corral.cache.store import CacheUnavailable
from corral.errors import (
    BadRequest,
    Forbidden,
    MethodNotAllowed,
    NotFound,
    Unauthorized,
    Unavailable,
)
from corral.http.admin_recording import usage_answer, webhooks_answer
from corral.http.messages import Request, Response
from corral.http.routes import Endpoint
from corral.storage.keys import KeyChanges, KeySpec, describe

if TYPE_CHECKING:
    from pydantic import SecretStr

    from corral.admin import AdminService
    from corral.backends.fleet import Fleet
    from corral.http.cache_stage import CacheStage
    from corral.http.limit_stage import LimitStage
    from corral.routing.queue import Router

# The seed gateways' admin paths, outside /admin (which the route table sends here already).
CONFIG_ENDPOINT = Endpoint("/config/*", "ops", frozenset({"GET", "HEAD", "POST"}), "admin")
CONFIG_PATHS = frozenset({"/config/new-key", "/config/reload"})
_KEY_FIELDS = frozenset({"name", "description", "models", "rpm", "tpm", "max_concurrency"})


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


class AdminRoutes:
    """``answer(request)`` for every admin path; ``service`` is ``None`` without key storage."""

    def __init__(
        self,
        fleet: Fleet,
        router: Router,
        admin_token: SecretStr | None,
        service: AdminService | None = None,
        *,
        cache: CacheStage | None = None,
        limits: LimitStage | None = None,
    ) -> None:
        self.fleet = fleet
        self.router = router
        self.admin_token = admin_token
        self.service = service
        self.cache = cache
        self.limits = limits

    def match(self, path: str) -> Endpoint | None:
        """The endpoint for a seed admin path (``/config/...``), which the route table lacks."""
        return CONFIG_ENDPOINT if path in CONFIG_PATHS else None

    def authorize(self, request: Request) -> None:
        token = self.admin_token
        if token is None:
            client = request.state.get("client_ip") or request.client[0]
            if not _is_loopback(client):
                raise Forbidden("without admin_token, the admin API is open to this machine only")
            return
        given = request.headers.get("x-admin-token")
        if given is None:
            auth = request.headers.get("authorization") or ""
            scheme, _, value = auth.partition(" ")
            given = value.strip() if scheme.lower() == "bearer" else None
        expected = token.get_secret_value().encode()
        if given is None or not hmac.compare_digest(given.encode("latin-1"), expected):
            raise Unauthorized("a valid admin token is required")

    async def answer(self, request: Request) -> Response:
        self.authorize(request)
        parts = [unquote(p) for p in request.path.split("/") if p]
        if parts[0] == "config" or parts[1:] == ["reload"]:
            return await self._config(request, parts[-1])
        parts = parts[1:]  # drop "admin"
        if parts == ["backends"]:
            _allow(request, "GET", "HEAD")
            return Response.json(200, {"backends": self.backends()})
        if len(parts) == 3 and parts[0] == "backends" and parts[2] in ("drain", "enable"):
            _allow(request, "POST")
            backend = self.fleet.get(parts[1])
            if backend is None:
                raise NotFound(f"no backend named {parts[1]!r}")
            backend.draining = parts[2] == "drain"
            return Response.json(200, self.describe(backend.name))
        if parts and parts[0] == "keys":
            return await self._keys(request, parts[1:])
        if parts == ["usage"]:
            return await usage_answer(self._service(), request)
        if parts and parts[0] == "webhooks":
            return await webhooks_answer(self._service(), request, parts[1:])
        if parts == ["cache"]:
            return await self._cache(request)
        raise NotFound(f"path {request.path!r} not found")

    def backends(self) -> list[dict[str, object]]:
        return [self.describe(b.name) for b in self.fleet.backends]

    def describe(self, name: str) -> dict[str, object]:
        backend = self.fleet.get(name)
        assert backend is not None
        snapshot = backend.snapshot()
        snapshot["queued"] = self.router.queued_for(backend)
        return snapshot

    # ---- keys -----------------------------------------------------------------------------

    def _service(self) -> AdminService:
        if self.service is None:
            raise NotFound("API keys are not available on this corral")
        return self.service

    async def _keys(self, request: Request, rest: list[str]) -> Response:
        service = self._service()
        now = service.now()
        if not rest:
            _allow(request, "GET", "HEAD", "POST")
            if request.method == "POST":
                record, plaintext = await service.create_key(_spec(_json(request), now))
                return Response.json(201, {"key": plaintext, **describe(record, now)})
            return Response.json(
                200, {"keys": [describe(r, now) for r in await service.list_keys()]}
            )
        ref = rest[0]
        if rest[1:] == ["revoke"]:
            _allow(request, "POST")
            return Response.json(200, describe(await service.revoke_key(ref), now))
        if len(rest) != 1:
            raise NotFound(f"path {request.path!r} not found")
        _allow(request, "GET", "HEAD", "PATCH", "DELETE")
        if request.method == "PATCH":
            record = await service.update_key(ref, _changes(_json(request), now))
        elif request.method == "DELETE":
            record = await service.delete_key(ref)
        else:
            record = await service.show_key(ref)
            shown = describe(record, now)
            if self.limits is not None:
                # What the key has used of its own limits right now (the running counters).
                shown["limit_usage"] = await self.limits.key_usage(entry_for(record).principal)
            return Response.json(200, shown)
        return Response.json(200, describe(record, now))

    # ---- response cache -----------------------------------------------------------------

    async def _cache(self, request: Request) -> Response:
        _allow(request, "GET", "HEAD", "DELETE")
        if self.cache is None:
            raise NotFound("the response cache is not available on this corral")
        try:
            if request.method == "DELETE":
                return Response.json(200, {"cleared": await self.cache.clear()})
            return Response.json(200, await self.cache.stats())
        except CacheUnavailable as err:
            raise Unavailable(f"the cache store is unavailable: {err}", retry_after=5) from err

    async def _config(self, request: Request, action: str) -> Response:
        # Both change something, so never on HEAD; GET because the seed documents GET.
        _allow(request, "GET", "POST")
        service = self._service()
        if action == "reload":
            return Response.json(200, {"status": "reloaded", **(await service.reload_settings())})
        ((record, plaintext),) = await service.generate_keys(1, "made by /config/new-key")
        now = service.now()
        return Response.json(201, {"key": plaintext, **describe(record, now)})


def _allow(request: Request, *methods: str) -> None:
    if request.method not in methods:
        raise MethodNotAllowed(f"use {' or '.join(methods)}", allow=", ".join(methods))


def _json(request: Request) -> dict[str, Any]:
    try:
        payload = orjson.loads(request.body or b"{}")
    except orjson.JSONDecodeError:
        raise BadRequest("the request body must be JSON") from None
    if not isinstance(payload, dict):
        raise BadRequest("the request body must be a JSON object")
    return payload


def _key_fields(payload: dict[str, Any], extra: frozenset[str]) -> dict[str, Any]:
    unknown = sorted(set(payload) - _KEY_FIELDS - extra)
    if unknown:
        raise BadRequest(f"unknown field(s): {', '.join(unknown)}")
    fields: dict[str, Any] = {}
    for name in ("rpm", "tpm", "max_concurrency"):
        if name in payload:
            fields[name] = parse_limit(payload[name], name)
    if "models" in payload:
        fields["models"] = parse_models(payload["models"])
    if "description" in payload:
        if not isinstance(payload["description"], str):
            raise BadRequest("description must be a string")
        fields["description"] = payload["description"]
    if "name" in payload:
        if not isinstance(payload["name"], str):
            raise BadRequest("name must be a string")
        fields["name"] = check_name(payload["name"])
    return fields


def _spec(payload: dict[str, Any], now: datetime) -> KeySpec:
    fields = _key_fields(payload, frozenset({"expires"}))
    if "name" not in fields:
        raise BadRequest("name is required")
    return KeySpec(**fields, expires_at=parse_expiry(payload.get("expires"), now))


def _changes(payload: dict[str, Any], now: datetime) -> KeyChanges:
    fields = _key_fields(payload, frozenset({"expires", "active"}))
    if "expires" in payload:
        fields["expires_at"] = parse_expiry(payload["expires"], now)
    if "active" in payload:
        if not isinstance(payload["active"], bool):
            raise BadRequest("active must be true or false")
        fields["active"] = payload["active"]
    return KeyChanges(**fields)
