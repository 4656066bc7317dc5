"""corral's own HTTP/1.1 server, spoken to in raw bytes: framing, limits, timeouts, hostile input."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from corral.http.messages import Request, Response, ResponseSink, StreamResponse
from corral.http.server import HttpServer, ServerLimits
from tests.rawhttp import RawClient, read_response


async def echo(request: Request) -> Response:
    if request.path == "/stream":

        async def chunks() -> AsyncIterator[bytes]:
            for i in range(3):
                yield b"line %d\n" % i

        return StreamResponse(200, chunks(), [(b"Content-Type", b"text/plain")])
    body = b"%s %s %s|" % (request.method.encode(), request.path.encode(), request.query.encode())
    return Response(200, body + request.body, [(b"Content-Type", b"text/plain")])


@pytest.fixture
async def server() -> AsyncIterator[HttpServer]:
    srv = HttpServer(
        echo,
        ServerLimits(
            max_request_line=1024,
            max_header_size=4096,
            max_headers=20,
            max_body_size=1000,
            header_timeout=0.3,
            keepalive_timeout=0.3,
        ),
    )
    await srv.start("127.0.0.1", 0)
    yield srv
    await srv.aclose(grace=1)


async def test_keep_alive_serves_several_requests_on_one_connection(server: HttpServer) -> None:
    async with RawClient(server.port) as c:
        for i in range(3):
            await c.send(b"GET /a?i=%d HTTP/1.1\r\nHost: x\r\n\r\n" % i)
            status, headers, body = await c.response()
            assert status == 200
            assert body == b"GET /a i=%d|" % i


async def test_pipelined_requests_are_answered_in_order(server: HttpServer) -> None:
    async with RawClient(server.port) as c:
        await c.send(
            b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\n"
            b"POST /2 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
            b"GET /3 HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        bodies = [(await c.response())[2] for _ in range(3)]
    assert bodies == [b"GET /1 |", b"POST /2 |abc", b"GET /3 |"]


async def test_head_sends_headers_without_body(server: HttpServer) -> None:
    async with RawClient(server.port) as c:
        await c.send(b"HEAD /x HTTP/1.1\r\nHost: x\r\n\r\nGET /y HTTP/1.1\r\nHost: x\r\n\r\n")
        status, headers, body = await c.response(head=True)
        assert status == 200
        assert headers[b"content-length"] == b"9"  # len(b"HEAD /x |")
        assert body == b""
        # The next response follows immediately: no stray body bytes in between.
        assert (await c.response())[2] == b"GET /y |"


async def test_expect_100_continue_gets_interim_response(server: HttpServer) -> None:
    async with RawClient(server.port) as c:
        await c.send(
            b"POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n"
        )
        interim = await c.reader.readuntil(b"\r\n\r\n")
        assert interim.startswith(b"HTTP/1.1 100 Continue")
        await c.send(b"hi")
        assert (await c.response())[2] == b"POST /e |hi"


async def test_chunked_request_body_is_decoded(server: HttpServer) -> None:
    async with RawClient(server.port) as c:
        await c.send(
            b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
        )
        assert (await c.response())[2] == b"POST /c |abcde"


async def test_streamed_response_is_chunked(server: HttpServer) -> None:
    async with RawClient(server.port) as c:
        await c.send(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
        status, headers, body = await c.response()
    assert headers[b"transfer-encoding"] == b"chunked"
    assert body == b"line 0\nline 1\nline 2\n"


async def test_http10_stream_is_sent_raw_and_closed(server: HttpServer) -> None:
    async with RawClient(server.port) as c:
        await c.send(b"GET /stream HTTP/1.0\r\n\r\n")
        data = await c.reader.read()
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"chunked" not in head.lower()
    assert body == b"line 0\nline 1\nline 2\n"


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        # request smuggling: two framings, or two lengths
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            400,
        ),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n",
            400,
        ),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc", 400),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 30\r\n\r\nabc", 400),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
            400,
        ),
        # limits
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n", 413),
        (b"GET /" + b"a" * 2000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 5000 + b"\r\n\r\n", 431),
        (b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(30)) + b"\r\n", 431),
        # garbage
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http at all\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nBad Header Line\r\n\r\n", 400),
    ],
)
async def test_bad_requests_are_rejected_and_connection_closed(
    server: HttpServer, raw: bytes, status: int
) -> None:
    async with RawClient(server.port) as c:
        # A second request rides behind: it must never be answered (no smuggling).
        await c.send(raw + b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n")
        got, headers, body = await c.response()
        assert got == status
        assert b'"error"' in body
        assert headers.get(b"connection") == b"close"
        assert await c.reader.read() == b""
    # ... and the server keeps serving everyone else.
    async with RawClient(server.port) as c:
        await c.send(b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await c.response())[0] == 200


async def test_chunked_body_over_the_limit_is_rejected(server: HttpServer) -> None:
    async with RawClient(server.port) as c:
        await c.send(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(5):
            await c.send(b"190\r\n" + b"x" * 400 + b"\r\n")
            if c.reader.at_eof():
                break
        status, _, _ = await c.response()
    assert status == 413


async def test_slow_headers_get_408_while_others_are_served(server: HttpServer) -> None:
    async with RawClient(server.port) as slow, RawClient(server.port) as fast:
        # A client trickling its head one byte at a time, slower than header_timeout allows.
        for byte in b"GET / HT":
            await slow.send(bytes([byte]))
            await fast.send(b"GET /fast HTTP/1.1\r\nHost: x\r\n\r\n")
            assert (await fast.response())[0] == 200
        status, _, _ = await asyncio.wait_for(slow.response(), timeout=5)
        assert status == 408
        assert await slow.reader.read() == b""


async def test_idle_keep_alive_connection_is_closed(server: HttpServer) -> None:
    async with RawClient(server.port) as c:
        await c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await c.response()
        assert await asyncio.wait_for(c.reader.read(), timeout=5) == b""


class HeldStream(Response):
    """A streamed answer as the relay sends one: it writes its head and a first line, then
    hands itself off to the connection and goes on from no coroutine. The test ends it."""

    def __init__(self, *, instant: bool = False) -> None:
        super().__init__(200)
        self.instant = instant
        self.sink: ResponseSink | None = None
        self.gone = asyncio.Event()

    async def send(self, sink: ResponseSink) -> None:
        sink.write_head(200, [], chunked=True)
        sink.write(b"first\n")
        self.sink = sink
        sink.hand_off(self)
        if self.instant:  # ends before send() returns, as a relay whose backend was quick
            self.end()

    def end(self) -> None:
        sink, self.sink = self.sink, None
        if sink is not None:
            sink.write(b"last\n")
            sink.set_flow_listener(None)
            sink.end()
            sink.answered()

    def pause_writing(self) -> None:
        pass

    def resume_writing(self) -> None:
        pass

    def client_gone(self) -> None:
        self.sink = None
        self.gone.set()


class Held:
    """A server whose ``/held`` answers are HeldStreams, kept for the test to end."""

    def __init__(self) -> None:
        self.streams: list[HeldStream] = []
        self.server = HttpServer(self.handle, ServerLimits(header_timeout=0.3, keepalive_timeout=0.3))

    async def handle(self, request: Request) -> Response:
        if request.path not in ("/held", "/instant"):
            return await echo(request)
        stream = HeldStream(instant=request.path == "/instant")
        self.streams.append(stream)
        return stream

    def end_all(self) -> None:
        for stream in self.streams:
            stream.end()


@pytest.fixture
async def held() -> AsyncIterator[Held]:
    held = Held()
    await held.server.start("127.0.0.1", 0)
    yield held
    held.end_all()
    await held.server.aclose(grace=1)


async def test_request_sent_during_a_streamed_answer_is_answered_after_it(held: Held) -> None:
    async with RawClient(held.server.port) as c:
        await c.send(b"GET /held HTTP/1.1\r\nHost: x\r\n\r\n")
        await asyncio.wait_for(c.reader.readuntil(b"first\n"), timeout=5)
        # The connection let go of its parser while the answer streams: these bytes bring it back.
        await c.send(b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n")
        held.end_all()
        rest = await asyncio.wait_for(c.reader.readuntil(b"\r\n0\r\n\r\n"), timeout=5)
        assert rest.endswith(b"last\n\r\n0\r\n\r\n")
        status, _, body = await c.response()
    assert (status, body) == (200, b"GET /next |")


async def test_answer_that_ends_within_its_send_leaves_the_connection_ready(held: Held) -> None:
    async with RawClient(held.server.port) as c:
        for path in (b"/instant", b"/instant", b"/next"):
            await c.send(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path)
            status, _, body = await c.response()
            assert status == 200
        assert body == b"GET /next |"


async def test_slow_head_sent_during_a_streamed_answer_closes_the_connection(held: Held) -> None:
    async with RawClient(held.server.port) as c:
        await c.send(b"GET /held HTTP/1.1\r\nHost: x\r\n\r\n")
        await asyncio.wait_for(c.reader.readuntil(b"first\n"), timeout=5)
        # Half a head, never finished: its deadline holds even though the answer had no timer.
        await c.send(b"GET /next HT")
        rest = await asyncio.wait_for(c.reader.read(), timeout=5)
    assert b"last" not in rest
    await asyncio.wait_for(held.streams[0].gone.wait(), timeout=5)


async def test_connection_idle_after_a_streamed_answer_is_closed(held: Held) -> None:
    async with RawClient(held.server.port) as c:
        await c.send(b"GET /held HTTP/1.1\r\nHost: x\r\n\r\n")
        await asyncio.wait_for(c.reader.readuntil(b"first\n"), timeout=5)
        held.end_all()
        assert await asyncio.wait_for(c.reader.readuntil(b"0\r\n\r\n"), timeout=5)
        # The answer's end armed the idle deadline again.
        assert await asyncio.wait_for(c.reader.read(), timeout=5) == b""


async def test_client_leaving_ends_a_streamed_answer(held: Held) -> None:
    async with RawClient(held.server.port) as c:
        await c.send(b"GET /held HTTP/1.1\r\nHost: x\r\n\r\n")
        await asyncio.wait_for(c.reader.readuntil(b"first\n"), timeout=5)
    await asyncio.wait_for(held.streams[0].gone.wait(), timeout=5)
    assert not held.server.connections


async def test_shutdown_lets_a_streamed_answer_finish(held: Held) -> None:
    async with RawClient(held.server.port) as c:
        await c.send(b"GET /held HTTP/1.1\r\nHost: x\r\n\r\n")
        await asyncio.wait_for(c.reader.readuntil(b"first\n"), timeout=5)
        closing = asyncio.create_task(held.server.aclose(grace=5))
        await asyncio.sleep(0)  # a turn of the loop: the shutdown is now waiting for answers
        assert not closing.done()
        held.end_all()
        await asyncio.wait_for(closing, timeout=5)
        assert (await c.reader.read()).endswith(b"last\n\r\n0\r\n\r\n")
    assert not held.streams[0].gone.is_set()


async def test_client_leaving_cancels_the_handler() -> None:
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def forever(request: Request) -> Response:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return Response(200)

    srv = HttpServer(forever)
    await srv.start("127.0.0.1", 0)
    try:
        async with RawClient(srv.port) as c:
            await c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            await asyncio.wait_for(started.wait(), 5)
        await asyncio.wait_for(cancelled.wait(), 1)
    finally:
        await srv.aclose(grace=0.5)


async def test_handler_bug_becomes_500_without_details() -> None:
    async def broken(request: Request) -> Response:
        raise RuntimeError("secret detail")

    srv = HttpServer(broken)
    await srv.start("127.0.0.1", 0)
    try:
        async with RawClient(srv.port) as c:
            await c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            status, _, body = await c.response()
        assert status == 500
        assert b"secret" not in body
        assert body == b'{"error":"internal error"}'
    finally:
        await srv.aclose(grace=0.5)


async def test_read_response_helper_parses_fixed_and_chunked() -> None:
    reader = asyncio.StreamReader()
    reader.feed_data(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n")
    status, headers, body = await read_response(reader)
    assert (status, body) == (200, b"ab")
