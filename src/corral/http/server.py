"""corral's inbound HTTP/1.1 server: asyncio Protocol + httptools (llhttp).

One :class:`HttpConnection` per client socket parses requests in callbacks, reads each body within
its limit, and runs one handler task per request, in arrival order (pipelined requests wait their
turn, so responses go out in order). The handler returns a response object, and the server awaits
``response.send(connection)``: the connection is the :class:`ResponseSink`. A response that goes
on from callbacks (the streaming relay) hands itself off to the connection instead, and the
request's task ends while it streams.

What a framework would have done for us, and what the tests in ``tests/http`` check byte by byte:
keep-alive and pipelining, ``HEAD``, ``Expect: 100-continue``, chunked and fixed-length bodies,
limits on the request line, headers and body, a deadline for slow headers (slowloris) and for
idle keep-alive connections, and rejection of ambiguous framing (request smuggling).

When the client goes away, the running handler task is cancelled: everything downstream (queue
wait, upstream request) unwinds through ``CancelledError`` and closes what it opened; an answer
handed off is told (``client_gone``) and closes its upstream.

Example::

    server = HttpServer(handle)
    await server.start("127.0.0.1", 8080)
    ...
    await server.aclose()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from corral.http.connection import HttpConnection
from corral.http.messages import Request, Response
from corral.http.sink import status_line

__all__ = ["HttpServer", "ServerLimits", "default_error_renderer", "status_line"]

log = logging.getLogger("corral.http")

Handler = Callable[[Request], Awaitable[Response]]
# Decides, from method and path, whether a request's body is streamed to the handler as it
# arrives instead of being read whole first (and so escapes max_body_size).
StreamBodyPredicate = Callable[[bytes, bytes], bool]
ErrorRenderer = Callable[[str, int, str], Response]


def default_error_renderer(path: str, status: int, message: str) -> Response:
    """The server's own errors (bad framing, limits), in Ollama's ``{"error": ...}`` shape."""
    return Response.json(status, {"error": message})


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """Bounds on what one client may send. Defaults suit Ollama's JSON APIs (images included)."""

    max_request_line: int = 8 * 1024
    max_header_size: int = 64 * 1024
    max_headers: int = 100
    max_body_size: int = 64 * 1024 * 1024
    header_timeout: float = 10.0
    keepalive_timeout: float = 75.0
    # Requests parsed ahead of the one being answered; past this we stop reading the socket.
    max_pipelined: int = 16


class HttpServer:
    """Listens on a socket and hands each parsed request to ``handler``."""

    def __init__(
        self,
        handler: Handler,
        limits: ServerLimits | None = None,
        render_error: ErrorRenderer = default_error_renderer,
        stream_body: StreamBodyPredicate | None = None,
    ) -> None:
        self.handler = handler
        self.stream_body = stream_body
        self.limits = limits or ServerLimits()
        self.render_error = render_error
        self.connections: set[HttpConnection] = set()
        self.closing = False
        self._server: asyncio.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None, "server not started"
        return self._loop

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._loop = asyncio.get_running_loop()
        self._server = await self._loop.create_server(
            lambda: HttpConnection(self), host, port, reuse_address=True, backlog=4096
        )

    @property
    def port(self) -> int:
        assert self._server is not None and self._server.sockets, "server not started"
        return int(self._server.sockets[0].getsockname()[1])

    async def aclose(self, grace: float = 10.0) -> None:
        """Stop accepting, let in-flight requests finish for up to ``grace`` seconds, then drop."""
        self.closing = True
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            conn.close_if_idle()
        answering = [c.in_progress() for c in self.connections]
        tasks = [answer for answer in answering if answer is not None]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace)
            for task in pending:
                task.cancel()  # a handed-off answer ends when its connection closes, below
        for conn in list(self.connections):
            conn._close()
        if self._server is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), timeout=1.0)
