"""The upstream pool's read deadline: one timer for the pool keeps every exchange's deadline."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from corral.backends.upstream import UpstreamClosed, UpstreamPool

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
# A chunked answer that sends its first chunk and then nothing, as a stuck model runner would.
STALL = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nfirst\n\r\n"
READ_TIMEOUT = 0.2


async def _backend(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            writer.write(STALL if head.startswith(b"GET /stall ") else OK)
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


@pytest.fixture
async def pool() -> AsyncIterator[UpstreamPool]:
    server = await asyncio.start_server(_backend, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    pool = UpstreamPool("127.0.0.1", port, read_timeout=READ_TIMEOUT)
    yield pool
    await pool.aclose()
    server.close()
    await server.wait_closed()


async def test_stalled_bodies_fail_after_the_read_timeout_and_idle_connections_stay(
    pool: UpstreamPool,
) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    stalled = [await pool.request(b"GET", b"/stall", []) for _ in range(2)]
    assert [r.status for r in stalled] == [200, 200]
    # A finished exchange meanwhile: its connection waits in the pool, where no deadline applies.
    answered = await pool.request(b"GET", b"/ok", [])
    assert await answered.read() == b"ok"
    assert pool.open_connections == 3
    for response in stalled:
        with pytest.raises(UpstreamClosed, match="sent nothing"):
            await asyncio.wait_for(response.read(), timeout=5)
    assert loop.time() - started >= READ_TIMEOUT
    assert pool.open_connections == 1
    # The idle connection carries the next exchange, under a deadline of its own.
    again = await pool.request(b"GET", b"/stall", [])
    with pytest.raises(UpstreamClosed, match="sent nothing"):
        await asyncio.wait_for(again.read(), timeout=5)
    assert pool.open_connections == 0
