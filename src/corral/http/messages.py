"""Request and response values of corral's HTTP layer.

A handler receives a :class:`Request` (headers parsed, body fully read and within its limit) and
returns a :class:`Response`. The server then calls ``await response.send(sink)``: each response
kind knows how to write itself, so the server needs no special cases.

- :class:`Response`: a complete body, sent with ``Content-Length``.
- :class:`StreamResponse`: an async iterator of chunks, sent with chunked encoding. Fine for the
  simulator and admin pages; the hot relay path uses its own kind (``corral.http.relay``), which
  moves bytes in protocol callbacks instead of awaiting every chunk, and hands itself off to the
  connection (``ResponseSink.hand_off``) instead of awaiting its end.

Example::

    async def handle(request: Request) -> Response:
        if request.path == "/":
            return Response.text(200, "Ollama is running")
        return Response.json(404, {"error": "not found"})
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any, Protocol

import orjson

HeaderList = list[tuple[bytes, bytes]]

JSON_TYPE = b"application/json; charset=utf-8"
NDJSON_TYPE = b"application/x-ndjson"
TEXT_TYPE = b"text/plain; charset=utf-8"


class Headers:
    """Case-insensitive view over raw header pairs, keeping their order and original bytes.

    >>> h = Headers([(b"Content-Type", b"application/json")])
    >>> h.get("content-type")
    'application/json'
    """

    __slots__ = ("_index", "raw")

    def __init__(self, raw: HeaderList) -> None:
        self.raw = raw
        self._index: dict[bytes, bytes] | None = None

    def _lookup(self) -> dict[bytes, bytes]:
        if self._index is None:
            index: dict[bytes, bytes] = {}
            for name, value in self.raw:
                key = name.lower()
                index[key] = index[key] + b", " + value if key in index else value
            self._index = index
        return self._index

    def get(self, name: str, default: str | None = None) -> str | None:
        value = self._lookup().get(name.lower().encode("latin-1"))
        return default if value is None else value.decode("latin-1")

    def get_bytes(self, name: bytes) -> bytes | None:
        return self._lookup().get(name.lower())

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        return name.lower().encode("latin-1") in self._lookup()

    def items(self) -> Iterable[tuple[str, str]]:
        return ((n.decode("latin-1"), v.decode("latin-1")) for n, v in self.raw)


class Request:
    """One parsed HTTP request. ``body`` is complete; ``client`` is the peer address."""

    __slots__ = (
        "body",
        "body_stream",
        "client",
        "headers",
        "http_version",
        "keep_alive",
        "method",
        "path",
        "query",
        "state",
    )

    def __init__(
        self,
        method: str,
        path: str,
        query: str,
        headers: Headers,
        body: bytes,
        client: tuple[str, int],
        http_version: str = "1.1",
        keep_alive: bool = True,
    ) -> None:
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body
        self.client = client
        self.http_version = http_version
        self.keep_alive = keep_alive
        # Per-request scratch space for the stages (request id, timings, ...).
        self.state: dict[str, Any] = {}
        # Set instead of ``body`` for uploads the server streams (see HttpServer.stream_body).
        self.body_stream: BodyStream | None = None


class BodyStream:
    """A request body read while it arrives, for uploads too large to hold (model blobs).

    The server pushes chunks; the handler reads them. Past ``high_water`` buffered bytes the
    server stops reading the client's socket until the handler catches up.

    >>> stream = BodyStream(pause=lambda: None, resume=lambda: None)
    >>> stream.push(b"abc"); stream.finish()
    """

    def __init__(
        self,
        pause: Callable[[], None],
        resume: Callable[[], None],
        length: int | None = None,
        high_water: int = 1 << 20,
    ) -> None:
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._pause = pause
        self._resume = resume
        self._paused = False
        self._high_water = high_water
        self._waiter: asyncio.Future[None] | None = None
        self.length = length
        self.done = False
        self.received = 0

    def push(self, chunk: bytes) -> None:
        self._chunks.append(chunk)
        self._size += len(chunk)
        self.received += len(chunk)
        if self._size > self._high_water and not self._paused:
            self._paused = True
            self._pause()
        self._wake()

    def finish(self) -> None:
        self.done = True
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def read(self) -> bytes:
        """The next chunk, or ``b""`` once the body is complete."""
        while not self._chunks:
            if self.done:
                return b""
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        chunk = self._chunks.popleft()
        self._size -= len(chunk)
        if self._paused and self._size < self._high_water // 2:
            self._paused = False
            self._resume()
        return chunk


class ResponseSink(Protocol):
    """What a response writes into: one client connection, owned by the server.

    ``write_head`` must be called once before any ``write``. ``chunked`` selects the framing;
    when it is false the body must match the ``Content-Length`` in ``headers``.
    """

    def write_head(self, status: int, headers: HeaderList, *, chunked: bool) -> None: ...

    def write(self, data: bytes) -> None: ...

    def write_many(self, chunks: list[bytes]) -> None:
        """``write`` of each chunk in turn, in one write to the socket."""
        ...

    def end(self) -> None: ...

    async def drain(self) -> None: ...

    @property
    def head_only(self) -> bool: ...

    def set_flow_listener(self, listener: FlowListener | None) -> None: ...

    def hand_off(self, answer: HandedOff) -> None:
        """Let ``send`` return before the answer is whole: ``answer`` goes on from callbacks,
        told of back-pressure and of a client that leaves, and calls :meth:`answered` at its
        end. No coroutine waits for it meanwhile."""
        ...

    def answered(self) -> None:
        """A handed-off answer has ended (after its ``end``, or after it cut the connection)."""
        ...


class FlowListener(Protocol):
    """Told when the client's socket buffer fills up and drains again (back-pressure)."""

    def pause_writing(self) -> None: ...

    def resume_writing(self) -> None: ...


class HandedOff(FlowListener, Protocol):
    """An answer sent from callbacks after its ``send`` returned: the streaming relay, which
    moves a backend's chunks from the upstream connection's callbacks. A stream can last
    minutes, and a coroutine waiting for each of hundreds of them (a task and its frames)
    costs about a kilobyte each."""

    def client_gone(self) -> None:
        """The client's connection closed before the answer ended."""
        ...


class Response:
    """A response whose whole body is known. Sent with ``Content-Length``."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, body: bytes = b"", headers: HeaderList | None = None) -> None:
        self.status = status
        self.body = body
        self.headers: HeaderList = headers if headers is not None else []

    @classmethod
    def json(cls, status: int, payload: Any, headers: HeaderList | None = None) -> Response:
        hdrs = [(b"Content-Type", JSON_TYPE)]
        if headers:
            hdrs.extend(headers)
        return cls(status, orjson.dumps(payload), hdrs)

    @classmethod
    def text(cls, status: int, text: str, headers: HeaderList | None = None) -> Response:
        hdrs = [(b"Content-Type", TEXT_TYPE)]
        if headers:
            hdrs.extend(headers)
        return cls(status, text.encode(), hdrs)

    async def send(self, sink: ResponseSink) -> None:
        headers = [*self.headers, (b"Content-Length", str(len(self.body)).encode())]
        sink.write_head(self.status, headers, chunked=False)
        if self.body and not sink.head_only:
            sink.write(self.body)
        sink.end()


class StreamResponse(Response):
    """A response produced chunk by chunk by an async iterator, sent chunked.

    Each chunk is written as soon as the iterator yields it; the writer waits for the client's
    socket to drain, so a slow reader slows the producer instead of filling memory.
    """

    __slots__ = ("chunks",)

    def __init__(
        self,
        status: int,
        chunks: AsyncIterator[bytes],
        headers: HeaderList | None = None,
    ) -> None:
        super().__init__(status, b"", headers)
        self.chunks = chunks

    async def send(self, sink: ResponseSink) -> None:
        sink.write_head(self.status, list(self.headers), chunked=True)
        try:
            if not sink.head_only:
                async for chunk in self.chunks:
                    if chunk:
                        sink.write(chunk)
                        await sink.drain()
        finally:
            aclose = getattr(self.chunks, "aclose", None)
            if aclose is not None:
                await asyncio.shield(aclose())
        sink.end()
