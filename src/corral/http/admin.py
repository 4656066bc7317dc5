"""The admin API under ``/admin``: the fleet view, and draining or re-enabling a backend.

Protected by ``admin_token`` when it is set (``Authorization: Bearer <token>`` or
``X-Admin-Token``); without one, only clients on the same machine (loopback) may use it.

- ``GET /admin/backends``: every backend's state, in-flight and queued requests, models,
  loaded models, recent latency.
- ``POST /admin/backends/{name}/drain``: no new requests; in-flight ones finish.
- ``POST /admin/backends/{name}/enable``: back in rotation.
"""

from __future__ import annotations

import hmac
import ipaddress
from typing import TYPE_CHECKING

from corral.errors import Forbidden, MethodNotAllowed, NotFound, Unauthorized
from corral.http.messages import Request, Response

if TYPE_CHECKING:
    from pydantic import SecretStr

    from corral.backends.fleet import Fleet
    from corral.routing.queue import Router


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


class AdminRoutes:
    def __init__(self, fleet: Fleet, router: Router, admin_token: SecretStr | None) -> None:
        self.fleet = fleet
        self.router = router
        self.admin_token = admin_token

    def authorize(self, request: Request) -> None:
        token = self.admin_token
        if token is None:
            if not _is_loopback(request.client[0]):
                raise Forbidden("without admin_token, the admin API is open to this machine only")
            return
        given = request.headers.get("x-admin-token")
        if given is None:
            auth = request.headers.get("authorization") or ""
            scheme, _, value = auth.partition(" ")
            given = value.strip() if scheme.lower() == "bearer" else None
        expected = token.get_secret_value().encode()
        if given is None or not hmac.compare_digest(given.encode(), expected):
            raise Unauthorized("a valid admin token is required")

    async def answer(self, request: Request) -> Response:
        self.authorize(request)
        parts = [p for p in request.path.split("/") if p][1:]  # drop "admin"
        if parts == ["backends"]:
            if request.method not in ("GET", "HEAD"):
                raise MethodNotAllowed("use GET", allow="GET, HEAD")
            return Response.json(200, {"backends": self.backends()})
        if len(parts) == 3 and parts[0] == "backends" and parts[2] in ("drain", "enable"):
            if request.method != "POST":
                raise MethodNotAllowed("use POST", allow="POST")
            backend = self.fleet.get(parts[1])
            if backend is None:
                raise NotFound(f"no backend named {parts[1]!r}")
            backend.draining = parts[2] == "drain"
            return Response.json(200, self.describe(backend.name))
        raise NotFound(f"path {request.path!r} not found")

    def backends(self) -> list[dict[str, object]]:
        return [self.describe(b.name) for b in self.fleet.backends]

    def describe(self, name: str) -> dict[str, object]:
        backend = self.fleet.get(name)
        assert backend is not None
        snapshot = backend.snapshot()
        snapshot["queued"] = self.router.queued_for(backend)
        return snapshot
