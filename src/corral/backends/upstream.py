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

from corral.backends.upstream_connection import UpstreamConnection
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
