"""The reading half of a client connection (:class:`~corral.http.connection.HttpConnection`):
httptools' callbacks build each :class:`~corral.http.messages.Request`, enforcing the size limits
and refusing ambiguous framing (two lengths, a length and chunked) as the bytes arrive. A refusal
is a :class:`BadRequest`, which the connection answers and then closes.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import httptools

from corral.http.messages import BodyStream, HeaderList, Headers, Request
from corral.http.sink import ResponseWriter

if TYPE_CHECKING:
    from corral.http.server import HttpServer, ServerLimits


class BadRequest(Exception):
    """A request corral refuses while reading it: the status and message it answers with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


_HOP_BY_HOP_TE = b"transfer-encoding"
_CL = b"content-length"


class RequestReader(ResponseWriter):
    """Parser callbacks and the request being read; the connection that subclasses it starts
    and queues the requests (:meth:`_start`, ``_pipeline``) and keeps the deadlines."""

    __slots__ = (
        "_body",
        "_body_size",
        "_chunked_request",
        "_content_length",
        "_continue_pending",
        "_expect_continue",
        "_header_bytes",
        "_headers",
        "_in_body",
        "_last_read",
        "_msg_started",
        "_parsing",
        "_reading_paused",
        "_streamed",
        "_url",
    )

    _url: bytes
    _headers: HeaderList
    _header_bytes: int
    _body: list[bytes]
    _body_size: int
    _content_length: bytes | None
    _chunked_request: bool
    _expect_continue: bool
    _continue_pending: bool  # a 100 Continue owed once the requests before it are answered
    _parsing: bool
    _streamed: BodyStream | None
    _msg_started: float
    _last_read: float
    _in_body: bool
    _reading_paused: bool  # too many pipelined requests wait: read no more for now
    # The connection's own, which reading uses.
    _server: HttpServer
    _limits: ServerLimits
    _parser: httptools.HttpRequestParser | None
    _pipeline: list[Request]
    _timer: asyncio.TimerHandle | None
    client: tuple[str, int]

    @property
    def _busy(self) -> bool:
        raise NotImplementedError

    def _start(self, request: Request) -> None:
        raise NotImplementedError

    def _arm(self, delay: float | None = None) -> None:
        raise NotImplementedError

    # ---- parser callbacks -----------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._parsing = True
        self._url = b""
        self._headers = []
        self._header_bytes = 0
        self._body = []
        self._body_size = 0
        self._content_length = None
        self._chunked_request = False
        self._expect_continue = False
        self._in_body = False
        # From here the whole head must arrive within header_timeout (slowloris).
        self._msg_started = self._loop.time()
        if self._timer is None:
            self._arm()

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > self._limits.max_request_line:
            raise BadRequest(414, "request line too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_bytes += len(name) + len(value) + 4
        if self._header_bytes > self._limits.max_header_size:
            raise BadRequest(431, "request headers too large")
        if len(self._headers) >= self._limits.max_headers:
            raise BadRequest(431, "too many request headers")
        lname = name.lower()
        if lname == _CL:
            # Two lengths, even equal ones, are a smuggling vector: refuse.
            if self._content_length is not None:
                raise BadRequest(400, "duplicate Content-Length header")
            if self._chunked_request:
                raise BadRequest(400, "both Content-Length and Transfer-Encoding")
            if not value.strip().isdigit():
                raise BadRequest(400, "invalid Content-Length header")
            self._content_length = value.strip()
        elif lname == _HOP_BY_HOP_TE:
            if self._content_length is not None:
                raise BadRequest(400, "both Content-Length and Transfer-Encoding")
            self._chunked_request = True
        elif lname == b"expect" and value.strip().lower() == b"100-continue":
            self._expect_continue = True
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        self._in_body = True
        self._last_read = self._loop.time()
        stream_body = self._server.stream_body
        if (
            stream_body is not None
            and not self._busy
            and (self._content_length != b"0")
            and self._parser is not None  # this runs in its callbacks
            and stream_body(self._parser.get_method(), self._url)
        ):
            self._start_streamed()
            return
        length = self._content_length
        if length is not None and int(length) > self._limits.max_body_size:
            raise BadRequest(413, "request body too large")
        if self._expect_continue:
            if not self._busy and not self._pipeline:
                self._write_raw(b"HTTP/1.1 100 Continue\r\n\r\n")
            else:
                self._continue_pending = True

    def on_body(self, body: bytes) -> None:
        self._last_read = self._loop.time()
        if self._streamed is not None:
            self._streamed.push(body)
            return
        self._body_size += len(body)
        if self._body_size > self._limits.max_body_size:
            raise BadRequest(413, "request body too large")
        self._body.append(body)

    def on_message_complete(self) -> None:
        self._parsing = False
        if self._streamed is not None:
            self._streamed.finish()
            self._streamed = None
            return
        request = self._build_request()
        if not self._busy:
            self._start(request)
        else:
            self._pipeline.append(request)
            if len(self._pipeline) >= self._limits.max_pipelined and not self._reading_paused:
                assert self._transport is not None
                self._transport.pause_reading()
                self._reading_paused = True

    def _start_streamed(self) -> None:
        """Dispatch now; the body follows through ``request.body_stream``."""
        assert self._transport is not None
        transport = self._transport
        length = int(self._content_length) if self._content_length is not None else None
        stream = BodyStream(transport.pause_reading, transport.resume_reading, length)
        request = self._build_request()
        request.body_stream = stream
        self._streamed = stream
        if self._expect_continue:
            self._write_raw(b"HTTP/1.1 100 Continue\r\n\r\n")
        self._start(request)

    def _build_request(self) -> Request:
        parser = self._parser
        assert parser is not None  # this runs in its callbacks
        url = httptools.parse_url(self._url) if self._url else None
        path = url.path.decode("latin-1") if url is not None and url.path else "/"
        query = url.query.decode("latin-1") if url is not None and url.query else ""
        body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        request = Request(
            parser.get_method().decode("latin-1"),
            path,
            query,
            Headers(self._headers),
            body,
            self.client,
            parser.get_http_version(),
            parser.should_keep_alive(),
        )
        return request


def parser_reason(err: Exception) -> str:
    text = str(err).strip() or type(err).__name__
    return text.split(":", 1)[-1].strip() if ":" in text else text
