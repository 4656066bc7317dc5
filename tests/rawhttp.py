"""A byte-level HTTP/1.1 client for tests that must control exactly what goes on the wire."""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType


async def read_response(
    reader: asyncio.StreamReader, *, head: bool = False
) -> tuple[int, dict[bytes, bytes], bytes]:
    """Read one response: status, lower-cased headers, and the de-chunked body."""
    raw_head = await reader.readuntil(b"\r\n\r\n")
    lines = raw_head[:-4].split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    headers: dict[bytes, bytes] = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    if head or status in (204, 304) or 100 <= status < 200:
        return status, headers, b""
    if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        body = bytearray()
        while True:
            size = int((await reader.readuntil(b"\r\n"))[:-2].split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                return status, headers, bytes(body)
            body += await reader.readexactly(size)
            await reader.readexactly(2)
    if b"content-length" in headers:
        return status, headers, await reader.readexactly(int(headers[b"content-length"]))
    return status, headers, await reader.read()


class RawClient:
    """``async with RawClient(port) as c: await c.send(b"GET / ..."); await c.response()``."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = port

    async def __aenter__(self) -> RawClient:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        with contextlib.suppress(ConnectionError):
            await self.writer.drain()

    async def response(self, *, head: bool = False) -> tuple[int, dict[bytes, bytes], bytes]:
        return await asyncio.wait_for(read_response(self.reader, head=head), timeout=10)
