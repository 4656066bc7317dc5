"""The relay against scripted backends that misbehave at the byte level."""

from __future__ import annotations

import asyncio
import hashlib
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import orjson
import pytest

from corral.http.connection import HttpConnection
from tests.harness import running_corral
from tests.rawhttp import RawClient

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]

OK_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"


class ScriptedBackend:
    """A TCP server that runs ``script`` for every connection, counting them."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.connections = 0
        self.closed = asyncio.Event()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        pump: asyncio.Task[None] | None = None
        try:
            # corral's health checks get sane answers; the script sees everything after them.
            while True:
                request = await read_request(reader)
                answer = _HEALTH.get(request.split(b" ", 2)[1])
                if answer is None or not request.startswith(b"GET"):
                    break
                writer.write(OK_HEAD % len(answer) + answer)
                await writer.drain()
            replay = asyncio.StreamReader()
            replay.feed_data(request)
            pump = asyncio.create_task(_copy(reader, replay))
            await self.script(replay, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            if pump is not None:
                pump.cancel()
            writer.close()
            self.closed.set()

    async def __aenter__(self) -> ScriptedBackend:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()


_HEALTH = {
    b"/api/version": b'{"version":"0.12.6"}',
    b"/api/tags": b'{"models":[{"name":"m:latest","model":"m:latest","digest":"d"}]}',
    b"/api/ps": b'{"models":[]}',
}


async def _copy(source: asyncio.StreamReader, sink: asyncio.StreamReader) -> None:
    while data := await source.read(65536):
        sink.feed_data(data)
    sink.feed_eof()


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return head + await reader.readexactly(length)


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as c:
        yield c


async def test_stale_pooled_connection_is_retried_once(client: httpx.AsyncClient) -> None:
    async def answer_once_then_drop_the_next(
        r: asyncio.StreamReader, w: asyncio.StreamWriter
    ) -> None:
        await read_request(r)
        w.write(OK_HEAD % 2 + b"{}")
        await w.drain()
        # Keep-alive was promised, but the next request finds the connection closing.
        await read_request(r)

    async with ScriptedBackend(answer_once_then_drop_the_next) as backend:
        async with running_corral([backend.url]) as (app, _):
            for _ in range(2):
                r = await client.post(app.url + "/api/show", json={"model": "m"})
                assert r.status_code == 200
    # The second request found its pooled connection dead and went out again on a new one.
    assert backend.connections >= 2


async def test_backend_garbage_is_502(client: httpx.AsyncClient) -> None:
    async def garbage(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_request(r)
        w.write(b"this is not http\r\n\r\n")
        await w.drain()

    async with ScriptedBackend(garbage) as backend:
        async with running_corral([backend.url]) as (app, _):
            r = await client.post(app.url + "/api/chat", json={"model": "m"})
            assert r.status_code == 502
            assert "error" in r.json()
            # corral is still fine
            assert (await client.get(app.url + "/healthz")).status_code == 200


async def test_backend_that_hangs_is_504(client: httpx.AsyncClient) -> None:
    async def hang(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_request(r)
        await asyncio.Event().wait()

    async with ScriptedBackend(hang) as backend:
        async with running_corral([backend.url], read_timeout=0.2) as (app, _):
            r = await client.post(app.url + "/v1/chat/completions", json={"model": "m"})
            assert r.status_code == 504
            assert r.json()["error"]["type"] == "api_error"


async def test_stream_cut_mid_way_ends_with_an_error_line(client: httpx.AsyncClient) -> None:
    async def drop(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_request(r)
        w.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        line = b'{"model":"m","response":"a","done":false}\n'
        w.write(b"%x\r\n%b\r\n" % (len(line), line))
        await w.drain()
        w.transport.abort()

    async with ScriptedBackend(drop) as backend:
        async with running_corral([backend.url]) as (app, log):
            r = await client.post(app.url + "/api/generate", json={"model": "m"})
            lines = [orjson.loads(x) for x in r.content.splitlines()]
    assert r.status_code == 200
    assert lines[0]["response"] == "a"
    assert "error" in lines[-1]
    assert any(e.get("error") for e in log.entries if e["route"] == "/api/generate")


async def test_streaming_answer_keeps_no_copy_of_its_large_request(
    client: httpx.AsyncClient,
) -> None:
    release = asyncio.Event()

    async def stream_until_released(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_request(r)
        w.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        for line in (b'{"message":{"content":"a"},"done":false}\n', None):
            if line is None:
                await release.wait()
                line = b'{"done":true}\n'
            w.write(b"%x\r\n%b\r\n" % (len(line), line))
            await w.drain()
        w.write(b"0\r\n\r\n")
        await w.drain()

    # A long conversation: what corral holds of it while the answer streams is measured.
    prompt = "x" * 2_000_000
    body = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": prompt}]})
    async with ScriptedBackend(stream_until_released) as backend:
        async with running_corral([backend.url]) as (app, _):
            tracemalloc.start()
            try:
                async with client.stream("POST", app.url + "/api/chat", content=body) as r:
                    lines = r.aiter_lines()
                    assert "content" in await anext(lines)
                    held = tracemalloc.take_snapshot().filter_traces(
                        [tracemalloc.Filter(True, "*/src/corral/*")]
                    )
                    release.set()
                    assert [orjson.loads(line) async for line in lines] == [{"done": True}]
            finally:
                tracemalloc.stop()
    assert sum(stat.size for stat in held.statistics("filename")) < len(prompt) // 2


async def test_fixed_length_answer_cut_mid_way_is_not_passed_off_as_whole() -> None:
    async def short(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_request(r)
        w.write(OK_HEAD % 100 + b'{"partial":')
        await w.drain()
        w.transport.abort()

    async with ScriptedBackend(short) as backend:
        async with running_corral([backend.url]) as (app, _):
            async with RawClient(app.port) as c:
                await c.send(post("/api/chat", b'{"model":"m","stream":false}'))
                with pytest.raises(asyncio.IncompleteReadError):
                    await c.response()


async def test_unreachable_backend_fails_over_to_the_next(client: httpx.AsyncClient) -> None:
    async def ok(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        while True:
            await read_request(r)
            w.write(OK_HEAD % 11 + b'{"ok":true}')
            await w.drain()

    # A port nothing listens on: bind, note it, close.
    probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    dead = f"http://127.0.0.1:{probe.sockets[0].getsockname()[1]}"
    probe.close()
    await probe.wait_closed()
    async with ScriptedBackend(ok) as backend:
        async with running_corral([dead, backend.url]) as (app, _):
            for _ in range(4):
                r = await client.post(app.url + "/api/chat", json={"model": "m", "stream": False})
                assert r.status_code == 200
                assert r.json() == {"ok": True}
        async with running_corral([dead]) as (app, _):
            # Known down since the start-up check: answered at once, with a hint to retry.
            r = await client.post(app.url + "/api/chat", json={"model": "m"})
            assert r.status_code == 503
            assert "Retry-After" in r.headers
            assert "no healthy backend" in r.json()["error"]


async def test_busy_backend_fails_over_and_last_busy_answer_is_relayed(
    client: httpx.AsyncClient,
) -> None:
    busy_body = b'{"error":"server busy, please try again.  maximum pending requests exceeded"}'

    async def busy(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        while True:
            await read_request(r)
            w.write(
                b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: %d\r\n\r\n%b"
                % (len(busy_body), busy_body)
            )
            await w.drain()

    async def ok(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        while True:
            await read_request(r)
            w.write(OK_HEAD % 2 + b"{}")
            await w.drain()

    async with ScriptedBackend(busy) as b1, ScriptedBackend(ok) as b2:
        async with running_corral([b1.url, b2.url]) as (app, _):
            for _ in range(4):
                r = await client.post(app.url + "/api/chat", json={"model": "m"})
                assert r.status_code == 200
        async with running_corral([b1.url]) as (app, _):
            r = await client.post(app.url + "/api/chat", json={"model": "m"})
            assert r.status_code == 503
            assert r.content == busy_body


async def test_slow_reader_pauses_the_backend_instead_of_buffering() -> None:
    total = 64 * 1024 * 1024
    written = 0
    blocked = asyncio.Event()

    async def firehose(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        nonlocal written
        await read_request(r)
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % total)
        chunk = b"x" * 65536
        while written < total:
            w.write(chunk)
            written += len(chunk)
            if w.transport.get_write_buffer_size() > 0:
                blocked.set()
            await w.drain()

    async with ScriptedBackend(firehose) as backend:
        async with running_corral([backend.url]) as (app, _):
            async with RawClient(app.port) as c:
                await c.send(post("/api/show", b'{"model":"m"}'))
                # The client reads nothing; the backend must soon find its socket full.
                await asyncio.wait_for(blocked.wait(), 10)
                stalled_at = written
                assert stalled_at < total // 2
                # Reading resumes the flow, and every byte arrives.
                head = await c.reader.readuntil(b"\r\n\r\n")
                assert b"200" in head.split(b"\r\n")[0]
                received = 0
                while received < total:
                    received += len(await c.reader.read(1 << 20))
                assert received == total


async def test_blob_upload_streams_past_the_body_limit_with_100_continue() -> None:
    received: dict[str, object] = {}

    async def blob_store(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        while True:
            head = await r.readuntil(b"\r\n\r\n")
            if head.startswith(b"POST /api/blobs/"):
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                received["digest"] = hashlib.sha256(await r.readexactly(length)).hexdigest()
                w.write(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")
            else:
                w.write(OK_HEAD % 2 + b"{}")
            await w.drain()

    payload = bytes(range(256)) * (40 * 1024 * 4)  # 40 MiB, far over max_body_size
    async with ScriptedBackend(blob_store) as backend:
        async with running_corral([backend.url], max_body_size=1000) as (app, _):
            async with RawClient(app.port) as c:
                await c.send(
                    b"POST /api/blobs/sha256:%s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n"
                    b"Expect: 100-continue\r\n\r\n" % (b"0" * 64, len(payload))
                )
                assert (await c.reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 100")
                await c.send(payload)
                status, _, _ = await c.response()
                assert status == 201
                # Other requests keep the ordinary limit.
                await c.send(b"POST /api/show HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\n")
                assert (await c.response())[0] == 413
    assert received["digest"] == hashlib.sha256(payload).hexdigest()


async def test_chunks_that_arrive_together_leave_in_one_write_each_framed_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lines = [b'{"model":"m","response":"%d","done":false}\n' % n for n in range(50)]
    lines.append(b'{"model":"m","response":"","done":true,"prompt_eval_count":3,"eval_count":50}\n')

    async def burst(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_request(r)
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n"
        w.write(head)
        await w.drain()
        # Every line and the end of the answer in one TCP write: one read at corral's end.
        w.write(b"".join(b"%x\r\n%b\r\n" % (len(x), x) for x in lines) + b"0\r\n\r\n")
        await w.drain()
        await read_request(r)

    writes: list[bytes] = []
    original = HttpConnection.connection_made

    def counted(self: HttpConnection, transport: asyncio.BaseTransport) -> None:
        original(self, CountedWrites(transport, writes))

    monkeypatch.setattr(HttpConnection, "connection_made", counted)
    async with ScriptedBackend(burst) as backend:
        async with running_corral([backend.url]) as (app, log):
            async with RawClient(app.port) as c:
                await c.send(post("/api/generate", b'{"model":"m"}'))
                status, _, answer = await c.response()
            entries = [e for e in log.entries if e["route"] == "/api/generate"]
    assert status == 200 and answer == b"".join(lines)
    # One write for the head and all 51 lines, one for the end of the answer; each line kept
    # its own chunk, as the backend framed it.
    assert len(writes) <= 3, [len(w) for w in writes]
    assert chunks_of(b"".join(writes)) == lines
    # The counts of the final line were still read off the answer's end.
    assert (entries[0]["prompt_tokens"], entries[0]["generated_tokens"]) == (3, 50)


class CountedWrites:
    """A client connection's transport that keeps every write it passes on."""

    def __init__(self, transport: Any, writes: list[bytes]) -> None:
        self._transport = transport
        self._writes = writes

    def write(self, data: bytes) -> None:
        self._writes.append(data)
        self._transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def post(path: str, body: bytes) -> bytes:
    """A whole POST request with ``body``, as a client puts it on the wire."""
    head = b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
    return head % (path.encode(), len(body)) + body


def chunks_of(response: bytes) -> list[bytes]:
    """The chunks of a chunked response, as framed on the wire."""
    rest = response.partition(b"\r\n\r\n")[2]
    found = []
    while True:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            return found
        found.append(rest[:size])
        rest = rest[size + 2 :]
