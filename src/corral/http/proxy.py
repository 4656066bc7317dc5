"""The request flow for API routes: edge, parse, auth, limits, cache, route and queue, relay,
record. :class:`Gateway` is the server's handler; each stage is a method, and stages that answer
from memory do not suspend. Errors are rendered once per surface at the end.

Example::

    gateway = Gateway(services)
    server = HttpServer(gateway.handle, limits, render_error=render_plain)
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
import secrets
import time
from typing import TYPE_CHECKING

from corral.backends.upstream import (
    UpstreamConnectError,
    UpstreamFailure,
    UpstreamResponse,
    client_error,
)
from corral.context import Call
from corral.errors import (
    CorralError,
    MethodNotAllowed,
    ModelNotFound,
)
from corral.http import routes
from corral.http.calls import parse_call, upstream_headers
from corral.http.errors import render_error
from corral.http.messages import HeaderList, Headers, Request, Response
from corral.http.relay import RelayOutcome, RelayResponse
from corral.http.relay_end import RelayEnd
from corral.observability.logs import access_entry, milliseconds
from corral.routing.queue import Lease

if TYPE_CHECKING:
    from corral.backends.backend import Backend
    from corral.http.cache_ticket import Ticket
    from corral.services import Services

log = logging.getLogger("corral.proxy")

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")


# Ollama answers 503 when its own queue is full ("server busy"): another backend may have room.
_BUSY = 503
# What a relayed request's headers become once its answer is chosen (see Gateway._relay).
_NO_HEADERS = Headers([])


class Gateway:
    """Turns one client request into one (or, on failover, a few) upstream requests."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self._ids = itertools.count(1)
        self._id_prefix = secrets.token_hex(4)
        settings = services.settings
        self._metrics_path = settings.metrics_path if settings.metrics_enabled else None

    # ---- edge -----------------------------------------------------------------------------

    def _request_id(self, request: Request) -> str:
        given = request.headers.get_bytes(b"x-request-id")
        if given is not None:
            text = given.decode("latin-1")
            if _REQUEST_ID.fullmatch(text):
                return text
        return f"{self._id_prefix}{next(self._ids):08x}"

    async def handle(self, request: Request) -> Response:
        started = time.perf_counter()
        request_id = self._request_id(request)
        state = request.state
        state["request_id"] = request_id
        state["started"] = started
        extra: HeaderList = [(b"X-Request-ID", request_id.encode())]
        cors = self.services.cors.headers_for(request)
        if cors:
            extra += cors
        surface = routes.surface_of(request.path)
        access = self.services.access
        client_ip = state["client_ip"] = access.client_ip(request)
        try:
            # IP rules come first: a denied client gets 403 before anything else runs.
            access.check_ip(client_ip)
            if request.path == self._metrics_path:
                response = self._metrics(request)
                response.headers.extend(extra)
                return response
            if request.path == "/generate":  # seed 004's name for Ollama's /api/generate
                request.path = "/api/generate"
            endpoint = self.services.admin.match(request.path) or routes.match(
                request.method, request.path
            )
            surface = endpoint.surface
            state["route"] = endpoint.name
            if request.method == "OPTIONS":
                # The preflight answer carries its own CORS headers: only the id is added.
                response = self.services.cors.preflight(request)
                extra = extra[:1]
            elif endpoint.kind == "local":
                access.check_local(request, endpoint)
                response = await self.services.ops.answer(endpoint, request)
            elif endpoint.kind == "admin":
                response = await self.services.admin.answer(request)
            elif endpoint.kind == "fleet":
                call = access.admit(request, endpoint, parse_call)
                state["model"] = call.model
                headers = upstream_headers(
                    request, request_id, self.services.access.credential_headers
                )
                response = await self.services.fleet_routes.answer(
                    endpoint.name, request, call, headers
                )
            else:
                # The key is checked, and removed from what goes upstream, before routing.
                call = access.admit(request, endpoint, parse_call)
                state["model"] = call.model
                response = await self._limited(call, request, extra)
                if isinstance(response, RelayResponse):
                    access.track(request, response)
                    return response
        except CorralError as err:
            state["error"] = err.message
            response = render_error(err, surface)
        except asyncio.CancelledError:
            self.services.metrics.cancelled("before_answer")
            self.record(request, 499, 0)
            raise
        response.headers.extend(extra)
        self.record(request, response.status, len(response.body))
        return response

    def _metrics(self, request: Request) -> Response:
        if request.method not in ("GET", "HEAD"):
            raise MethodNotAllowed(f"method {request.method} not allowed", allow="GET, HEAD")
        if self.services.settings.metrics_require_token:
            self.services.admin.authorize(request)
        metrics = self.services.metrics
        return Response(200, metrics.render(), [(b"Content-Type", metrics.content_type)])

    # ---- route, queue and relay -----------------------------------------------------------

    async def _limited(self, call: Call, request: Request, extra: HeaderList) -> Response:
        """The limits stage (429 here), then :meth:`_forward`; what the request reserved is
        settled when its answer ends."""
        limits = self.services.limits
        state = request.state
        if not limits.applies(state.get("principal")):
            return await self._forward(call, request, extra)
        if limits.inline is not None:
            call, admission = limits.admit_now(call, request, extra)
        else:
            call, admission = await limits.admit(call, request, extra)
        state["admission"] = admission  # a relayed answer's end (RelayEnd) settles it
        forwarded = False
        try:
            response = await self._forward(call, request, extra)
            forwarded = True
        finally:
            if not forwarded:  # failed or cancelled: nothing was generated
                admission.end(0)
        if not isinstance(response, RelayResponse):
            admission.end(0)  # a cached answer counts as a request, never as tokens
        return response

    async def _forward(self, call: Call, request: Request, extra: HeaderList) -> Response:
        """The cache stage (a hit is answered here), then route, queue and relay."""
        ticket = self.services.cache.admit(call, request)
        if ticket is None:
            return await self._send(call, request, extra)
        relayed = False
        try:
            hit = ticket.hit if ticket.settled else await ticket.settle()
            if hit is not None:
                return hit
            extra.append(ticket.header)
            response = await self._send(call, request, extra)
            relayed = True  # from here the relay's end keeps and shares the answer
            return response
        finally:
            if not relayed:
                # An error, or a client that left: requests waiting for this one go on alone.
                ticket.abandon()

    async def _send(self, call: Call, request: Request, extra: HeaderList) -> Response:
        services = self.services
        state = request.state
        target = request.path.encode("latin-1")
        if request.query:
            target += b"?" + request.query.encode("latin-1")
        method = request.method.encode()
        headers = upstream_headers(
            request, state["request_id"], self.services.access.credential_headers
        )
        tried = self.services.fleet_routes.excluded(call, request)
        failure: CorralError | None = None
        busy: tuple[UpstreamResponse, Lease, float] | None = None
        for attempt in range(services.settings.max_failover_tries):
            try:
                lease = await self._acquire(call, frozenset(tried))
            except CorralError:
                if failure is not None or busy is not None:
                    break
                raise
            backend = lease.backend
            tried.add(backend)
            if lease.queued_for:
                state["queue_ms"] = milliseconds(lease.queued_for)
                services.metrics.queued(lease.queued_for)
            sent_at = time.perf_counter()
            upstream: UpstreamResponse | None = None
            try:
                upstream = await backend.pool.request(
                    method, target, headers, call.body, request.body_stream
                )
            except UpstreamFailure as err:
                backend.record_failure(str(err))
                if isinstance(err, UpstreamConnectError):
                    backend.mark_down(str(err))
                failure = client_error(err, backend.name)
                services.metrics.failover(backend.name)
                if request.body_stream is not None and request.body_stream.received:
                    break  # the upload is consumed; it cannot be sent again
                log.warning(
                    "attempt %d on %s failed: %s",
                    attempt + 1,
                    backend.name,
                    err,
                    extra={"fields": {"request_id": state["request_id"], "backend": backend.name}},
                )
                continue
            finally:
                if upstream is None:  # failed or cancelled: the slot is free again
                    lease.release()
            backend.mark_up()
            if upstream.status >= 500 and upstream.status != _BUSY:
                backend.record_failure(f"answered {upstream.status}")
            if upstream.status == _BUSY and attempt + 1 < services.settings.max_failover_tries:
                # Keep this answer in case nobody else has room; try the next backend.
                if busy is not None:
                    busy[0].close()
                    busy[1].release()
                busy = (upstream, lease, sent_at)
                continue
            if busy is not None:
                busy[0].close()
                busy[1].release()
            return self._relay(upstream, lease, sent_at, call, request, extra)
        if busy is not None:
            return self._relay(busy[0], busy[1], busy[2], call, request, extra)
        assert failure is not None
        raise failure

    async def _acquire(self, call: Call, exclude: frozenset[Backend]) -> Lease:
        try:
            return await self.services.router.acquire(call, exclude)
        except ModelNotFound:
            # The index may be a few seconds old (a model pulled straight on a server):
            # look again once before answering 404.
            if not await self.services.fleet.refresh_models_if_stale():
                raise
            return await self.services.router.acquire(call, exclude)

    def _relay(
        self,
        upstream: UpstreamResponse,
        lease: Lease,
        sent_at: float,
        call: Call,
        request: Request,
        extra: HeaderList,
    ) -> RelayResponse:
        state = request.state
        state["backend"] = lease.backend.name
        ticket: Ticket | None = state.get("cache_ticket")
        done = RelayEnd(self, request, upstream, lease, ticket, sent_at, call)
        relay = RelayResponse(upstream, extra, sse_errors=call.surface == "openai", on_done=done)
        if ticket is not None:
            ticket.attach(relay)
        # The answer is chosen: nothing reads the request's headers or body again, and an
        # answer can stream for minutes. Let them go (a long conversation, images) meanwhile;
        # what the end needs (its state, method, path, client) stays.
        request.headers = _NO_HEADERS
        request.body = b""
        return relay

    # ---- record (the end of a relayed answer: corral.http.relay_end) ------------------------

    def record(
        self, request: Request, status: int, size: int, outcome: RelayOutcome | None = None
    ) -> None:
        """The record stage of a request that ended: its access log line, its usage (and
        webhook event), its request metric. ``outcome``: how its relay ended, if relayed."""
        first_byte_at = None if outcome is None else outcome.first_byte_at
        entry = access_entry(request, status, size, time.perf_counter(), first_byte_at)
        services = self.services
        services.access_log.record(entry)
        accounting = services.accounting
        if accounting is not None and "model" in request.state:  # an API call, past its parsing
            accounting.finished(request.state, entry)
        services.metrics.request(
            request.method, entry["route"], status, entry["duration_ms"] / 1000, entry["client"]
        )
