"""One keep-alive HTTP/1.1 connection to a backend (see :mod:`corral.backends.upstream`, whose
:class:`~corral.backends.upstream.UpstreamPool` opens, lends and keeps them): it sends one request
at a time, parses the answer with httptools, and hands its body on from ``data_received``.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, cast

import httptools

from corral.backends.upstream_errors import (
    UpstreamClosed,
    UpstreamFailure,
)
from corral.backends.upstream_response import UpstreamResponse
from corral.http.messages import BodyStream, HeaderList

if TYPE_CHECKING:
    from corral.backends.upstream import UpstreamPool


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
