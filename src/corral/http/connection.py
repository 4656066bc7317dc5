"""One client connection of :mod:`corral.http.server`: parsing in callbacks (httptools), limits,
deadlines, pipelining in order; responses are framed by :class:`~corral.http.sink.ResponseWriter`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, cast

import httptools

from corral.http.messages import (
    BodyStream,
    FlowListener,
    HandedOff,
    HeaderList,
    Request,
    Response,
)
from corral.http.request_reader import BadRequest, RequestReader, parser_reason

if TYPE_CHECKING:
    from corral.http.server import HttpServer

log = logging.getLogger("corral.http")


class HttpConnection(RequestReader, asyncio.Protocol):
    """One client connection. Also the sink responses write into."""

    # Slots, not a __dict__ (the halves' are RequestReader's and ResponseWriter's): one of these per
    # client socket, and past thirty attributes an instance dict is a table of its own, some
    # 1.5 KB a connection.
    __slots__ = (
        "_answer",
        "_answered_waiter",
        "_idle_deadline",
        "_limits",
        "_parser",
        "_pipeline",
        "_server",
        "_task",
        "_timer",
        "client",
    )

    def __init__(self, server: HttpServer) -> None:
        self._server = server
        self._limits = server.limits
        self._loop = server.loop
        self._transport: asyncio.Transport | None = None
        # Made when bytes arrive, dropped while a streamed answer goes out (see _rest).
        self._parser: httptools.HttpRequestParser | None = None
        self.client: tuple[str, int] = ("", 0)
        # request being parsed
        self._url = b""
        self._headers: HeaderList = []
        self._header_bytes = 0
        self._body: list[bytes] = []
        self._body_size = 0
        self._content_length: bytes | None = None
        self._chunked_request = False
        self._expect_continue = False
        self._parsing = False
        self._streamed: BodyStream | None = None
        # requests waiting for their turn, and the one being answered
        # A list, not a deque: an empty deque holds a block of 64 slots (some 600 bytes) on every
        # connection, and at most max_pipelined requests ever wait here.
        self._pipeline: list[Request] = []
        self._task: asyncio.Task[None] | None = None
        # An answer that goes on from callbacks after its task ended (see hand_off).
        self._answer: HandedOff | None = None
        self._answered_waiter: asyncio.Future[None] | None = None
        self._current: Request | None = None
        self._continue_pending = False
        self._reading_paused = False
        # response state
        self._head: bytes | None = None
        self._chunked = False
        self._head_only = False
        self._keep_alive = True
        self._write_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        self._flow: FlowListener | None = None
        self._closed = False
        # One lazy watchdog timer per connection: events only move deadlines, the timer
        # re-arms itself when it fires early. Cheaper than a timer per request.
        self._timer: asyncio.TimerHandle | None = None
        self._msg_started = 0.0
        self._last_read = 0.0
        self._in_body = False
        self._idle_deadline = 0.0

    # ---- connection lifecycle -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            self.client = (str(peer[0]), int(peer[1]))
        self._server.connections.add(self)
        self._idle_deadline = self._loop.time() + self._limits.header_timeout
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._server.connections.discard(self)
        self._cancel_timer()
        self._pipeline.clear()
        if self._task is not None and not self._task.done():
            # The client left: stop whatever we were doing for it.
            self._task.cancel()
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_exception(ConnectionResetError("client disconnected"))
        if self._flow is not None:
            # Unblock an upstream paused on our behalf; the relay notices the close itself.
            self._flow.resume_writing()
        if self._answer is not None:
            self._answer.client_gone()

    def pause_writing(self) -> None:
        self._write_paused = True
        if self._flow is not None:
            self._flow.pause_writing()

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._flow is not None:
            self._flow.resume_writing()
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    @property
    def _busy(self) -> bool:
        """A response is being sent: by the request's task, or from callbacks (hand_off)."""
        return self._task is not None or self._answer is not None

    def hand_off(self, answer: HandedOff) -> None:
        self._answer = answer
        self.set_flow_listener(answer)
        self._rest()

    def answered(self) -> None:
        self._answer = None
        waiter = self._answered_waiter
        if waiter is not None:
            self._answered_waiter = None
            if not waiter.done():
                waiter.set_result(None)
        if self._task is None:  # else it ended within send(), and the task finishes it
            self._finish()

    def in_progress(self) -> asyncio.Future[None] | None:
        """What a graceful shutdown waits for: the request's task, or the end of an answer
        handed off to callbacks; None when nothing is being answered."""
        if self._task is not None:
            return self._task
        if self._answer is None:
            return None
        if self._answered_waiter is None:
            self._answered_waiter = self._loop.create_future()
        return self._answered_waiter

    def _rest(self) -> None:
        """A streamed answer has begun. It can run for minutes, and its client sends nothing
        meanwhile: let go of what reading requests holds, the last one's head and body (its
        Request has them), the parser and the watchdog timer: some 2 KB a connection, over
        hundreds of open streams. The client's next bytes bring the parser back, the answer's
        end the timer. A request that asked to close keeps its parser, which refuses more."""
        if self._parsing:
            return  # a pipelined request is arriving: all of it is in use
        self._url, self._headers, self._body = b"", [], []
        if self._keep_alive:
            self._cancel_timer()
            self._parser = None

    def data_received(self, data: bytes) -> None:
        parser = self._parser
        if parser is None:
            parser = self._parser = httptools.HttpRequestParser(self)
        try:
            parser.feed_data(data)
        except httptools.HttpParserCallbackError as err:
            # httptools wraps what our callbacks raise; the cause is the exception's context.
            cause = err.__context__
            if isinstance(cause, BadRequest):
                self._reject(cause.status, cause.message)
            else:
                self._reject(400, "malformed request")
        except httptools.HttpParserUpgrade:
            self._reject(501, "protocol upgrades are not supported")
        except httptools.HttpParserError as err:
            self._reject(400, f"malformed request: {parser_reason(err)}")

    def eof_received(self) -> bool | None:
        # Like Go's net/http (and so Ollama), a client that closes its side has gone away:
        # returning None closes the transport, and connection_lost cancels its request.
        return None

    # ---- request dispatch -----------------------------------------------------------------

    def _start(self, request: Request) -> None:
        self._current = request
        self._head = None
        self._chunked = False
        self._head_only = request.method == "HEAD"
        self._keep_alive = request.keep_alive and not self._server.closing
        self._task = self._loop.create_task(self._run(request))

    async def _run(self, request: Request) -> None:
        try:
            response = await self._server.handler(request)
            await response.send(self)
            if self._answer is not None:
                # Handed off: the answer goes on from callbacks and finishes the exchange
                # itself (answered); this task, and what it holds, can go.
                self._task = None
                return
        except asyncio.CancelledError:
            self._keep_alive = False
            self._close()
            return
        except ConnectionError:
            self._close()
            return
        except Exception:
            # Handlers render their own errors; reaching here is a bug.
            log.exception("unhandled error answering %s %s", request.method, request.path)
            if self._head is None and not self._closed:
                self._keep_alive = False
                await self._server.render_error(request.path, 500, "internal error").send(self)
            else:
                self._close()
            return
        self._finish()

    def _finish(self) -> None:
        self._task = None
        self._current = None
        self._flow = None
        if self._closed:
            return
        if self._streamed is not None:
            # Answered before the upload ended: the rest of it has nowhere to go.
            self._keep_alive = False
        if not self._keep_alive:
            self._close()
            return
        if self._pipeline:
            request = self._pipeline.pop(0)
            if self._reading_paused and len(self._pipeline) < self._limits.max_pipelined // 2:
                assert self._transport is not None
                self._transport.resume_reading()
                self._reading_paused = False
            self._start(request)
        elif self._continue_pending:
            self._continue_pending = False
            self._write_raw(b"HTTP/1.1 100 Continue\r\n\r\n")
        elif not self._parsing:
            self._idle_deadline = self._loop.time() + self._limits.keepalive_timeout
            if self._timer is None:
                self._arm()

    def _reject(self, status: int, message: str) -> None:
        """Answer a request we could not parse, then close: the stream is out of sync."""
        self._pipeline.clear()
        self._keep_alive = False
        if self._transport is None or self._closed:
            return
        if self._busy:
            # A response is in progress; its framing must not be interleaved with ours.
            self._close()
            return
        self._transport.pause_reading()
        self._head_only = False
        self._head = None
        self._chunked = False
        path = self._url.decode("latin-1", "replace")
        response = self._server.render_error(path, status, message)
        self._task = self._loop.create_task(self._send_and_close(response))

    async def _send_and_close(self, response: Response) -> None:
        with contextlib.suppress(ConnectionError, asyncio.CancelledError):
            await response.send(self)
        self._close()

    # ---- timers ---------------------------------------------------------------------------

    def _arm(self, delay: float | None = None) -> None:
        if delay is None:
            delay = min(self._limits.header_timeout, self._limits.keepalive_timeout)
        self._timer = self._loop.call_later(max(delay, 0.001), self._watchdog)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _watchdog(self) -> None:
        self._timer = None
        if self._closed:
            return
        now = self._loop.time()
        timeout = self._limits.header_timeout
        if self._parsing:
            # A slow head is bounded from its start; a slow body from its last bytes.
            due = (self._last_read if self._in_body else self._msg_started) + timeout
            if now >= due:
                if not self._busy:
                    self._reject(408, "request not received in time")
                else:
                    self._close()
                return
        elif not self._busy and not self._pipeline:
            due = self._idle_deadline
            if now >= due:
                self._close()
                return
        else:
            # Busy answering, nothing being read: nothing to watch (the upstream side has its
            # own deadlines). The next request's first bytes, or this answer's end, re-arm it.
            return
        self._arm(due - now)

    def _close(self) -> None:
        self._cancel_timer()
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()

    def close_if_idle(self) -> None:
        if not self._busy and not self._parsing:
            self._close()
