"""Keep-alive HTTP/1.1 client connections to one backend, on asyncio Protocols + httptools.

:class:`UpstreamPool.request` sends a request and returns as soon as the status line and headers
are in: an :class:`UpstreamResponse`. Its body is then either read whole (``await read()``, for
corral's own calls such as health probes) or relayed: ``relay(sink)`` moves every body chunk into
the client's connection from inside ``data_received``, with no coroutine per chunk, and pauses
reading this socket while the client's socket is full.

A connection taken from the idle pool may have been closed by the backend a moment ago (Go's
server drops idle connections after a while). If such a reused connection dies before a single
byte of the response arrived, the request is sent once more on a fresh connection.

Example::

    pool = UpstreamPool("127.0.0.1", 11434, connect_timeout=5, read_timeout=300)
    response = await pool.request(b"GET", b"/api/version", [])
    body = await response.read()
    await pool.aclose()
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import cast

import httptools

from corral.backends.upstream_errors import (
    UpstreamClosed,
    UpstreamConnectError,
    UpstreamFailure,
    UpstreamReadTimeout,
    client_error,
)
from corral.backends.upstream_response import BodySink, UpstreamResponse
from corral.http.messages import BodyStream, HeaderList

__all__ = [
    "BodySink",
    "UpstreamClosed",
    "UpstreamConnectError",
    "UpstreamConnection",
    "UpstreamFailure",
    "UpstreamPool",
    "UpstreamReadTimeout",
    "UpstreamResponse",
    "client_error",
]


class UpstreamConnection(asyncio.Protocol):
    """One TCP connection to the backend; carries one request at a time."""

    # One per open stream, as many as there are client connections: no __dict__ each.
    __slots__ = (
        "_body",
        "_drain_waiter",
        "_head_request",
        "_headers",
        "_headers_waiter",
        "_loop",
        "_parser",
        "_pool",
        "_response",
        "_write_paused",
        "closed",
        "last_read",
        "received",
        "reused",
        "transport",
    )

    def __init__(self, pool: UpstreamPool) -> None:
        self._pool = pool
        self._loop = pool.loop
        self.transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self.reused = False
        self.closed = False
        self.received = 0
        self._head_request = False
        self._headers: HeaderList = []
        self._body: list[bytes] = []  # body chunks parsed from the read under way
        self._headers_waiter: asyncio.Future[UpstreamResponse] | None = None
        self._response: UpstreamResponse | None = None
        self.last_read = 0.0  # the pool's read deadline (UpstreamPool._watch) counts from here
        self._write_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None

    # ---- protocol callbacks ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.received += len(data)
        self.last_read = self._loop.time()
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as err:
            self._fail(UpstreamClosed(f"backend sent an invalid HTTP response: {err}"))
            self._abort()
        # _pass_body in line, and a relayed answer's chunks straight to the relay: this runs for
        # every read of every stream.
        chunks = self._body
        if chunks:
            self._body = []
            response = self._response
            if response is not None:
                sink = response._sink
                if sink is None:
                    response._on_body(chunks)
                elif len(chunks) == 1:
                    sink.on_chunk(chunks[0])
                else:
                    sink.on_chunks(chunks)

    def _pass_body(self) -> None:
        """Hand the response the body chunks parsed so far, all of a read together: a relay
        writes them to the client at once (a write per chunk, a system call each, would cost
        more than everything else corral does per chunk), and a chunk costs one callback."""
        chunks = self._body
        self._body = []
        response = self._response
        if response is not None:
            response._on_body(chunks)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._pool.forget(self)
        response = self._response
        if (
            response is not None
            and not response.complete
            and response.length_unknown
            and not response.chunked_upstream
        ):
            # HTTP/1.0-style body delimited by the close itself.
            self.on_message_complete()
            return
        self._fail(UpstreamClosed("backend closed the connection"))
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def pump(self, stream: BodyStream, chunked: bool) -> None:
        """Copy a streamed request body upstream, at the pace the backend reads it."""
        assert self.transport is not None
        transport = self.transport
        while not self.closed:
            chunk = await stream.read()
            if not chunk:
                if chunked:
                    transport.write(b"0\r\n\r\n")
                return
            transport.write(b"%x\r\n%b\r\n" % (len(chunk), chunk) if chunked else chunk)
            if self._write_paused and not self.closed:
                self._drain_waiter = self._loop.create_future()
                try:
                    await self._drain_waiter
                finally:
                    self._drain_waiter = None

    # httptools callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        parser = self._parser
        status = parser.get_status_code()
        if status < 200:
            # Interim response (we never send Expect); its real answer follows.
            self._headers = []
            return
        response = UpstreamResponse(self, status, self._headers, parser.should_keep_alive())
        self._response = response
        self._headers = []
        waiter, self._headers_waiter = self._headers_waiter, None  # the response is in charge now
        if waiter is not None and not waiter.done():
            waiter.set_result(response)
        if self._head_request:
            # No body follows, but httptools cannot be told the request was HEAD: finish the
            # exchange here and never reuse this connection.
            response.keep_alive = False
            self.on_message_complete()

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        if self._body:
            self._pass_body()  # the last chunks go before the end of the answer
        response = self._response
        if response is None or response.complete:
            return
        response._on_complete()

    # ---- requests -------------------------------------------------------------------------

    def send(
        self,
        method: bytes,
        target: bytes,
        headers: HeaderList,
        body: bytes,
        stream: BodyStream | None = None,
    ) -> asyncio.Future[UpstreamResponse]:
        assert self.transport is not None
        self._head_request = method == b"HEAD"
        self._response = None
        self._headers = []
        self.received = 0
        parts = [method, b" ", target, b" HTTP/1.1\r\nHost: ", self._pool.host_header, b"\r\n"]
        for name, value in headers:
            parts += (name, b": ", value, b"\r\n")
        if stream is not None:
            if stream.length is not None:
                parts += (b"Content-Length: ", str(stream.length).encode(), b"\r\n")
            else:
                parts.append(b"Transfer-Encoding: chunked\r\n")
        elif body or method in (b"POST", b"PUT", b"PATCH"):
            parts += (b"Content-Length: ", str(len(body)).encode(), b"\r\n")
        parts.append(b"\r\n")
        parts.append(body)
        waiter = self._headers_waiter = self._loop.create_future()
        self.last_read = self._loop.time()
        self._pool.watch()
        self.transport.write(b"".join(parts))
        return waiter

    def release(self, reusable: bool) -> None:
        """Back to the pool if the exchange ended cleanly, else closed."""
        self._headers_waiter = None
        self._response = None
        if reusable and not self.closed:
            # Not busy any more: the pool's read deadline passes it by.
            self._pool.put_idle(self)
        else:
            self._abort()

    def _fail(self, failure: UpstreamFailure) -> None:
        waiter = self._headers_waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(failure)
            return
        if self._body:
            self._pass_body()  # what arrived before the failure still goes first
        response = self._response
        if response is not None and not response.complete:
            response._on_failure(str(failure))

    @property
    def busy(self) -> bool:
        """An exchange is under way: its headers or the rest of its body are still to come."""
        response = self._response
        return self._headers_waiter is not None or (response is not None and not response.complete)

    def _abort(self) -> None:
        if self.transport is not None and not self.closed:
            self.closed = True
            self.transport.close()
            self._pool.forget(self)


class UpstreamPool:
    """Idle keep-alive connections to one backend, most recently used first."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        connect_timeout: float = 5.0,
        read_timeout: float = 300.0,
        max_idle: int = 256,
    ) -> None:
        self.host = host
        self.port = port
        self.host_header = f"{host}:{port}".encode()
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.max_idle = max_idle
        self._idle: deque[UpstreamConnection] = deque()
        self._all: set[UpstreamConnection] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    async def request(
        self,
        method: bytes,
        target: bytes,
        headers: HeaderList,
        body: bytes = b"",
        stream: BodyStream | None = None,
    ) -> UpstreamResponse:
        """Send one request; return once the response's status and headers have arrived.

        A ``stream`` body is copied as it arrives, on a fresh connection: it cannot be replayed,
        so there must be no stale keep-alive connection to retry from."""
        if stream is not None:
            conn = await self._connect()
            waiter = conn.send(method, target, headers, b"", stream)
            answered = False
            try:
                await conn.pump(stream, chunked=stream.length is None)
                response = await waiter
                answered = True
                return response
            finally:
                if not answered:
                    conn._abort()
        idle = self._take_idle()
        if idle is not None:
            try:
                return await self._exchange(idle, method, target, headers, body)
            except UpstreamClosed:
                if idle.received:
                    raise
                # A stale keep-alive connection: the backend closed it as we reused it.
        fresh = await self._connect()
        return await self._exchange(fresh, method, target, headers, body)

    async def _exchange(
        self,
        conn: UpstreamConnection,
        method: bytes,
        target: bytes,
        headers: HeaderList,
        body: bytes,
    ) -> UpstreamResponse:
        waiter = conn.send(method, target, headers, body)
        answered = False
        try:
            response = await waiter
            answered = True
            return response
        finally:
            if not answered:  # failed, timed out or cancelled: this connection is spent
                conn._abort()

    def _take_idle(self) -> UpstreamConnection | None:
        idle = self._idle
        while idle:
            conn = idle.pop()
            if not conn.closed and conn.transport is not None and not conn.transport.is_closing():
                conn.reused = True
                return conn
        return None

    async def _connect(self) -> UpstreamConnection:
        loop = self.loop
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, protocol = await loop.create_connection(
                    lambda: UpstreamConnection(self), self.host, self.port
                )
        except TimeoutError as err:
            raise UpstreamConnectError(
                f"could not connect to {self.host}:{self.port} within {self.connect_timeout:g}s"
            ) from err
        except OSError as err:
            reason = err.strerror or type(err).__name__
            raise UpstreamConnectError(
                f"could not connect to {self.host}:{self.port}: {reason}"
            ) from err
        assert isinstance(protocol, UpstreamConnection)
        self._all.add(protocol)
        return protocol

    # ---- read timeout: one lazy timer for the pool, re-armed only when it fires ---------------

    def watch(self) -> None:
        """A connection began an exchange: make sure the read deadline is being kept.

        One timer for the whole pool rather than one per connection (half a kilobyte each, on
        every open stream): every connection has the same read_timeout, so one that starts an
        exchange never has an earlier deadline than those already watched."""
        if self._timer is None and self.read_timeout > 0:
            self._timer = self.loop.call_later(self.read_timeout, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        now = self.loop.time()
        timeout = self.read_timeout
        earliest: float | None = None
        for conn in list(self._all):
            if not conn.busy:
                continue  # idle in the pool: no deadline
            due = conn.last_read + timeout
            if now >= due:
                conn._fail(UpstreamReadTimeout(f"backend sent nothing for {timeout:g}s"))
                conn._abort()
            elif earliest is None or due < earliest:
                earliest = due
        if earliest is not None:
            self._timer = self.loop.call_later(earliest - now, self._on_timer)

    def put_idle(self, conn: UpstreamConnection) -> None:
        if len(self._idle) >= self.max_idle:
            conn._abort()
            return
        self._idle.append(conn)

    def forget(self, conn: UpstreamConnection) -> None:
        self._all.discard(conn)
        with contextlib.suppress(ValueError):
            self._idle.remove(conn)

    @property
    def open_connections(self) -> int:
        return len(self._all)

    async def aclose(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for conn in list(self._all):
            conn._abort()
        self._idle.clear()
        self._all.clear()
