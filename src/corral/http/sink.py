"""The response half of a client connection: how a response is framed onto the socket.

:class:`ResponseWriter` is the :class:`~corral.http.messages.ResponseSink` every response writes
into: the status line and headers (held back so they leave with the first body bytes), chunked or
fixed-length framing, HTTP/1.0 clients, ``HEAD``, back-pressure (``drain``, flow listeners).
:class:`~corral.http.connection.HttpConnection` owns the state; this class only writes.
"""

from __future__ import annotations

import asyncio
from http import HTTPStatus

from corral.http.messages import FlowListener, HeaderList, Request

_REASONS = {s.value: s.phrase.encode() for s in HTTPStatus}
_REASONS[499] = b"Client Closed Request"
_STATUS_LINES: dict[int, bytes] = {}
# A header's line without its CRLF: (name, value) -> b"name: value". Mapped over the headers,
# it joins them with no Python step per header.
_header_line = b": ".join


def status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    if line is None:
        reason = _REASONS.get(status, b"Unknown")
        line = b"HTTP/1.1 %d %s\r\n" % (status, reason)
        _STATUS_LINES[status] = line
    return line


class ResponseWriter:
    """Framing for one connection's responses; the connection sets the fields below."""

    __slots__ = (
        "_chunked",
        "_closed",
        "_current",
        "_drain_waiter",
        "_flow",
        "_head",
        "_head_only",
        "_keep_alive",
        "_loop",
        "_transport",
        "_write_paused",
    )

    _transport: asyncio.Transport | None
    _loop: asyncio.AbstractEventLoop
    _current: Request | None
    _head: bytes | None
    _chunked: bool
    _head_only: bool
    _keep_alive: bool
    _closed: bool
    _write_paused: bool
    _drain_waiter: asyncio.Future[None] | None
    _flow: FlowListener | None

    @property
    def head_only(self) -> bool:
        return self._head_only

    def write_head(self, status: int, headers: HeaderList, *, chunked: bool) -> None:
        http10 = self._current is not None and self._current.http_version == "1.0"
        if chunked and http10:
            # HTTP/1.0 has no chunked encoding: send the body raw and close to end it.
            chunked = False
            self._keep_alive = False
        self._chunked = chunked and not self._head_only
        parts = [status_line(status)]
        if headers:
            parts.append(b"\r\n".join(map(_header_line, headers)) + b"\r\n")
        if chunked:
            parts.append(b"Transfer-Encoding: chunked\r\n")
        if not self._keep_alive:
            parts.append(b"Connection: close\r\n")
        elif http10:
            parts.append(b"Connection: keep-alive\r\n")
        parts.append(b"\r\n")
        # Held back so the head and the first body bytes leave in one write.
        self._head = b"".join(parts)

    def write(self, data: bytes) -> None:
        if self._head_only:
            return
        if self._chunked:
            data = b"%x\r\n%b\r\n" % (len(data), data)
        self._write_body(data)

    def write_many(self, chunks: list[bytes]) -> None:
        """Several body chunks in one write, each framed as it would be alone."""
        if self._head_only:
            return
        if self._chunked:
            self._write_body(b"".join([b"%x\r\n%b\r\n" % (len(c), c) for c in chunks]))
        else:
            self._write_body(b"".join(chunks))

    def end(self) -> None:
        self._write_body(b"0\r\n\r\n" if self._chunked else b"")

    def _write_body(self, data: bytes) -> None:
        """Framed body bytes, after the head while it is still held back (so that the head and
        the first body bytes leave in one write)."""
        head = self._head
        if head:
            self._head = b""
            data = head + data
        transport = self._transport  # _write_raw, in line: this runs for every read of a stream
        if data and transport is not None and not self._closed:
            transport.write(data)

    async def drain(self) -> None:
        if self._closed:
            raise ConnectionResetError("client disconnected")
        if not self._write_paused:
            return
        self._drain_waiter = self._loop.create_future()
        try:
            await self._drain_waiter
        finally:
            self._drain_waiter = None

    def set_flow_listener(self, listener: FlowListener | None) -> None:
        self._flow = listener
        if listener is not None and self._write_paused:
            listener.pause_writing()

    @property
    def closed(self) -> bool:
        return self._closed

    def abort(self) -> None:
        """Drop the connection without a proper end, so a cut body is not taken as whole."""
        self._keep_alive = False
        if self._transport is not None:
            self._transport.abort()

    def _write_raw(self, data: bytes) -> None:
        if self._transport is not None and not self._closed:
            self._transport.write(data)
