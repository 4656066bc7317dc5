"""Fleet-wide answers: the endpoints where the fleet speaks as one server, not one backend.

- ``GET /api/tags``, ``/v1/models``, ``/api/ps``, ``/api/version`` ask every target at once
  (each within ``merge_timeout``) and merge what came back (``corral.http.fanout``); a backend
  that fails is left out, and only when every one fails is the answer a 502.
- ``/api/delete`` and ``/api/copy`` go to every target at once; ``/api/pull`` and
  ``/api/create`` too, with their progress streams merged into one.

Targets are every usable backend, or the ones named in ``X-Corral-Backend: gpu1, gpu2``. With
exactly one target nothing is merged: the answer is that backend's own, byte for byte.

Example::

    routes = FleetRoutes(fleet)
    response = await routes.answer("/api/pull", request, call, upstream_headers)
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from corral.backends.backend import Backend
from corral.backends.fleet import Fleet
from corral.backends.models import index_change
from corral.backends.upstream import (
    UpstreamConnectError,
    UpstreamFailure,
    UpstreamReadTimeout,
    UpstreamResponse,
    client_error,
)
from corral.context import Call
from corral.errors import BadRequest, CorralError, NoHealthyBackend, UpstreamError
from corral.http.fanin import Fanin, FaninStream, Passthrough
from corral.http.fanout import (
    ProgressMerger,
    error_message,
    lowest_version,
    merge_openai_models,
    merge_ps,
    merge_tags,
    results_header,
)
from corral.http.messages import (
    JSON_TYPE,
    NDJSON_TYPE,
    HeaderList,
    Request,
    Response,
    StreamResponse,
)

TARGET_HEADER = "X-Corral-Backend"
RESULTS_HEADER = b"X-Corral-Results"
MERGED_READS = frozenset({"/api/tags", "/v1/models", "/api/ps", "/api/version"})
FANOUT_WRITES = frozenset({"/api/delete", "/api/copy"})
TRANSFERS = frozenset({"/api/pull", "/api/create"})
FLEET_ROUTES = MERGED_READS | FANOUT_WRITES | TRANSFERS

# Model lists and error bodies are small; a body past this is not one of them.
_BODY_LIMIT = 16 * 1024 * 1024


def _content_type(headers: HeaderList) -> bytes | None:
    return next((v for n, v in headers if n.lower() == b"content-type"), None)


@dataclass(frozen=True, slots=True)
class _Answer:
    """One target's whole answer; ``failure`` when there was no answer (transport failure)."""

    backend: Backend
    status: int
    body: bytes
    content_type: bytes | None = None
    failure: CorralError | None = None

    @classmethod
    def failed(cls, backend: Backend, err: CorralError) -> _Answer:
        body = orjson.dumps({"error": err.message})
        return cls(backend, err.status, body, JSON_TYPE, err)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def message(self) -> str:
        return error_message(self.status, self.body)

    def payload(self) -> Any:
        try:
            return orjson.loads(self.body) if self.body else None
        except orjson.JSONDecodeError:
            return None

    def response(self, headers: HeaderList) -> Response:
        head = [(b"Content-Type", self.content_type)] if self.content_type else []
        return Response(self.status, self.body, head + headers)


class FleetRoutes:
    """Answers the fleet-wide endpoints (``FLEET_ROUTES``) for the gateway.

    Example::

        routes = FleetRoutes(fleet)
        if endpoint.name in FLEET_ROUTES:
            return await routes.answer(endpoint.name, request, call, upstream_headers)
    """

    def __init__(self, fleet: Fleet, *, merge_timeout: float = 10.0) -> None:
        self.fleet = fleet
        self.merge_timeout = merge_timeout

    async def answer(
        self, endpoint_name: str, request: Request, call: Call, upstream_headers: HeaderList
    ) -> Response:
        if endpoint_name not in FLEET_ROUTES:
            raise ValueError(f"{endpoint_name} is not a fleet-wide route")
        targets = self.targets(request, call)
        header = TARGET_HEADER.lower().encode()
        headers = [(n, v) for n, v in upstream_headers if n.lower() != header]
        if len(targets) == 1:
            return await self._single(endpoint_name, targets[0], request, call, headers)
        if endpoint_name in MERGED_READS:
            return await self._merged_read(endpoint_name, targets, headers)
        if endpoint_name in TRANSFERS and call.stream:
            return await self._merged_transfer(endpoint_name, targets, headers, call)
        method = request.method.encode()
        answers = await asyncio.gather(
            *(self._fetch(b, method, endpoint_name.encode(), headers, call.body) for b in targets)
        )
        self._changed(endpoint_name, call, [a.backend for a in answers if a.ok])
        return _combine(answers, pull_like=endpoint_name in TRANSFERS)

    def _changed(self, endpoint: str, call: Call, backends: Sequence[Backend]) -> None:
        """Note what a write added or removed at once (the next request must find a model just
        pulled), then let the backends' own lists confirm it."""
        added, removed = index_change(endpoint, call.fields)
        self.fleet.models_changed(backends, added, removed)

    def excluded(self, call: Call, request: Request) -> set[Backend]:
        """Backends a routed request must not go to: those left out of ``X-Corral-Backend``;
        and for blob uploads all but one, always the same, so that the ``create`` that follows
        finds its files (see :meth:`targets`)."""
        if request.headers.get_bytes(TARGET_HEADER.lower().encode()) is not None:
            wanted = self.targets(request)
        elif call.endpoint == "/api/blobs/{digest}":
            wanted = self.targets(request)[:1]
        else:
            return set()
        return {b for b in self.fleet.backends if b not in wanted}

    def targets(self, request: Request, call: Call | None = None) -> list[Backend]:
        """The backends named in ``X-Corral-Backend``, else every usable one; except that a
        ``create`` from uploaded files goes where blob uploads go (the first usable backend),
        since only that one has the files."""
        named = request.headers.get(TARGET_HEADER)
        if named is None and call is not None and call.fields.get("files"):
            return self.targets(request)[:1]
        if named is None:
            usable = self.fleet.usable
            if not usable:
                raise NoHealthyBackend(
                    "no healthy backend is available", retry_after=_retry_hint(self.fleet.backends)
                )
            return usable
        names = list(dict.fromkeys(n.strip() for n in named.split(",") if n.strip()))
        if not names:
            raise BadRequest(f"{TARGET_HEADER} names no backend")
        chosen: list[Backend] = []
        for name in names:
            backend = self.fleet.get(name)
            if backend is None:
                known = ", ".join(b.name for b in self.fleet.backends)
                raise BadRequest(f"unknown backend {name!r} in {TARGET_HEADER} (known: {known})")
            chosen.append(backend)
        down = [b for b in chosen if not b.usable]
        if down:
            raise NoHealthyBackend(
                f"backend {', '.join(b.name for b in down)} is not available",
                retry_after=_retry_hint(down),
            )
        return chosen

    # ---- one target: its own answer, untouched ---------------------------------------------

    async def _single(
        self, endpoint: str, backend: Backend, request: Request, call: Call, headers: HeaderList
    ) -> Response:
        target = request.path.encode("latin-1")
        if request.query:
            target += b"?" + request.query.encode("latin-1")
        if endpoint in MERGED_READS:
            # GET for HEAD too: the server drops the body but keeps its length.
            answer = await self._fetch(backend, b"GET", target, headers, b"", self.merge_timeout)
            if answer.failure is not None:
                raise answer.failure
            return answer.response([])
        opened = await self._open(backend, request.method.encode(), target, headers, call.body)
        if isinstance(opened, _Answer):
            assert opened.failure is not None
            raise opened.failure
        if opened.chunked_upstream or opened.length_unknown:
            fanin = Fanin(1)
            fanin.attach(0, opened)
            stream = FaninStream(
                fanin, Passthrough(), lambda: self._changed(endpoint, call, [backend])
            )
            content_type = _content_type(opened.headers) or NDJSON_TYPE
            return StreamResponse(opened.status, stream, [(b"Content-Type", content_type)])
        answer = await self._read(backend, opened)
        if answer.failure is not None:
            raise answer.failure
        if answer.ok:
            self._changed(endpoint, call, [backend])
        return answer.response([])

    # ---- several targets ---------------------------------------------------------------------

    async def _merged_read(
        self, endpoint: str, targets: Sequence[Backend], headers: HeaderList
    ) -> Response:
        path = endpoint.encode()
        answers = await asyncio.gather(
            *(self._fetch(b, b"GET", path, headers, b"", self.merge_timeout) for b in targets)
        )
        good = [(a, p) for a in answers if a.ok and isinstance(p := a.payload(), dict)]
        if not good:
            reasons = "; ".join(f"{a.backend.name}: {a.message}" for a in answers)
            raise UpstreamError(f"no backend answered {endpoint}: {reasons}")
        if endpoint == "/api/version":
            versions = [p.get("version") for _, p in good]
            winner = good[lowest_version([v if isinstance(v, str) else None for v in versions])]
            return winner[0].response([])
        named = [(a.backend.name, p) for a, p in good]
        if endpoint == "/api/tags":
            merged = merge_tags(named)
        elif endpoint == "/v1/models":
            merged = merge_openai_models(named)
        else:
            merged = merge_ps(named, label=True)
        return Response.json(200, merged)

    async def _merged_transfer(
        self, endpoint: str, targets: Sequence[Backend], headers: HeaderList, call: Call
    ) -> Response:
        """Start the merged stream once one target answers 200; the others join as they
        answer. When none does, their errors are the answer, as a plain response."""
        fanin = Fanin(len(targets))
        refused: dict[int, _Answer] = {}
        path = endpoint.encode()
        for index, backend in enumerate(targets):
            start = self._join(fanin, refused, index, backend, path, headers, call.body)
            fanin.spawn(index, start)
        started = False
        try:
            await fanin.ready.wait()
            started = True
        finally:
            if not started:  # the client left before any answer: close every upstream
                fanin.close()
        if not fanin.streaming:
            internal = CorralError("internal error")
            answers = [refused.get(i) or _Answer.failed(b, internal) for i, b in enumerate(targets)]
            return _combine(answers, pull_like=True)
        merger = ProgressMerger([b.name for b in targets])
        stream = FaninStream(fanin, merger, lambda: self._changed(endpoint, call, targets))
        return StreamResponse(200, stream, [(b"Content-Type", NDJSON_TYPE)])

    async def _join(
        self,
        fanin: Fanin,
        refused: dict[int, _Answer],
        index: int,
        backend: Backend,
        path: bytes,
        headers: HeaderList,
        body: bytes,
    ) -> None:
        opened = await self._open(backend, b"POST", path, headers, body)
        if isinstance(opened, UpstreamResponse) and opened.status == 200:
            fanin.attach(index, opened)
            return
        if isinstance(opened, UpstreamResponse):
            # An error answer is complete at once; the pool's read timeout bounds the rest.
            opened = await self._read(backend, opened)
        refused[index] = opened
        fanin.refuse(index, opened.message)

    # ---- upstream requests ----------------------------------------------------------------

    async def _open(
        self, backend: Backend, method: bytes, target: bytes, headers: HeaderList, body: bytes
    ) -> UpstreamResponse | _Answer:
        try:
            return await backend.pool.request(method, target, headers, body)
        except UpstreamFailure as err:
            return _failed(backend, err)

    async def _read(self, backend: Backend, upstream: UpstreamResponse) -> _Answer:
        try:
            body = await upstream.read(limit=_BODY_LIMIT)
        except UpstreamFailure as err:
            return _failed(backend, err)
        finally:
            upstream.close()
        return _Answer(backend, upstream.status, body, _content_type(upstream.headers))

    async def _fetch(
        self,
        backend: Backend,
        method: bytes,
        target: bytes,
        headers: HeaderList,
        body: bytes,
        within: float | None = None,
    ) -> _Answer:
        """One whole answer; ``within`` seconds bound the request and its body together (the
        pool's own read timeout still applies between bytes)."""
        try:
            async with asyncio.timeout(within):
                opened = await self._open(backend, method, target, headers, body)
                if isinstance(opened, _Answer):
                    return opened
                return await self._read(backend, opened)
        except TimeoutError:
            return _failed(backend, UpstreamReadTimeout(f"no answer within {within:g}s"))


def _failed(backend: Backend, err: UpstreamFailure) -> _Answer:
    # The same passive health signals the proxy gives on real traffic.
    backend.record_failure(str(err))
    if isinstance(err, UpstreamConnectError):
        backend.mark_down(str(err))
    return _Answer.failed(backend, client_error(err, backend.name))


def _retry_hint(backends: Sequence[Backend]) -> float:
    return max(1.0, min((b.breaker.retry_in for b in backends), default=0.0))


def _combine(answers: Sequence[_Answer], *, pull_like: bool) -> Response:
    """Several targets' answers to one write as one answer, always with every target's status
    in ``X-Corral-Results``: the first answer when all succeeded; the shared answer when all
    failed alike; else the first failure's (for pull and create, with every failure's
    message, as the streaming form reports them)."""
    results = [(a.backend.name, a.status) for a in answers]
    headers: HeaderList = [(RESULTS_HEADER, results_header(results))]
    # A non-streaming pull or create can fail with a 200 whose body says why.
    failures = [a for a in answers if not a.ok or (pull_like and "error" in _keys(a))]
    if not failures:
        return answers[0].response(headers)
    first = failures[0]
    same = len(failures) == len(answers) and len({(a.status, a.body) for a in failures}) == 1
    if pull_like and not same:
        message = "; ".join(f"{a.backend.name}: {a.message}" for a in failures)
        status = first.status if first.status >= 400 else 500
        return Response.json(status, {"error": message}, headers)
    return first.response(headers)


def _keys(answer: _Answer) -> Sequence[str]:
    payload = answer.payload()
    return list(payload) if isinstance(payload, dict) else []
