"""A backend's answer as it arrives: status and headers first, then the body, either read whole
or relayed chunk by chunk from the connection's callbacks (see :mod:`corral.backends.upstream`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from corral.backends.upstream_errors import UpstreamClosed
from corral.http.messages import HeaderList

if TYPE_CHECKING:
    import asyncio

    from corral.backends.upstream_connection import UpstreamConnection


class BodySink(Protocol):
    """Where a relayed body goes: the client connection, through ``corral.http.relay``."""

    def on_chunk(self, data: bytes) -> None: ...

    def on_chunks(self, chunks: list[bytes]) -> None:
        """Several chunks that arrived in one read, in order: one write for all of them."""
        ...

    def on_complete(self) -> None: ...

    def on_failure(self, reason: str) -> None: ...


class UpstreamResponse:
    """Status and headers of a backend's answer; the body follows through ``read`` or ``relay``."""

    __slots__ = (
        "_conn",
        "_done",
        "_failure",
        "_limit",
        "_pending",
        "_pending_size",
        "_sink",
        "chunked_upstream",
        "complete",
        "headers",
        "keep_alive",
        "length_unknown",
        "status",
    )

    def __init__(
        self, conn: UpstreamConnection, status: int, headers: HeaderList, keep_alive: bool
    ) -> None:
        self._conn = conn
        self.status = status
        self.headers = headers
        self.keep_alive = keep_alive
        self.complete = False
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._limit = 0
        self._sink: BodySink | None = None
        self._failure: str | None = None
        self._done: asyncio.Future[None] | None = None
        te = cl = False
        for name, value in headers:
            lname = name.lower()
            if lname == b"transfer-encoding" and b"chunked" in value.lower():
                te = True
            elif lname == b"content-length":
                cl = True
        self.chunked_upstream = te
        self.length_unknown = not te and not cl

    # called by the connection

    def _on_body(self, chunks: list[bytes]) -> None:
        """The chunks of one read: relayed together (one write to the client), or kept."""
        if self._sink is not None:
            _deliver(self._sink, chunks)
            return
        self._pending += chunks
        self._pending_size += sum(map(len, chunks))
        if self._limit and self._pending_size > self._limit:
            self._conn._fail(UpstreamClosed(f"response larger than {self._limit} bytes"))
            self._conn._abort()

    def _on_complete(self) -> None:
        self.complete = True
        self._conn.release(self.keep_alive)
        if self._sink is not None:
            self._sink.on_complete()
        if self._done is not None and not self._done.done():
            self._done.set_result(None)

    def _on_failure(self, reason: str) -> None:
        if self._failure is not None:
            return  # reported once: an abort is followed by connection_lost
        self._failure = reason
        if self._sink is not None:
            self._sink.on_failure(reason)
        if self._done is not None and not self._done.done():
            self._done.set_exception(UpstreamClosed(reason))

    # called by the user

    @property
    def failed(self) -> str | None:
        return self._failure

    def relay(self, sink: BodySink) -> None:
        """Deliver what has arrived and everything after it to ``sink``, from callbacks."""
        self._sink = sink
        pending, self._pending = self._pending, []
        if pending:
            _deliver(sink, pending)
        if self.complete:
            sink.on_complete()
        elif self._failure is not None:
            sink.on_failure(self._failure)

    def detach(self) -> None:
        """Forget the body's consumer; nothing more will be delivered to it."""
        self._sink = None
        self._done = None

    def pause_reading(self) -> None:
        transport = self._conn.transport
        if transport is not None and not self._conn.closed:
            transport.pause_reading()

    def resume_reading(self) -> None:
        transport = self._conn.transport
        if transport is not None and not self._conn.closed:
            transport.resume_reading()

    async def read(self, limit: int = 64 * 1024 * 1024) -> bytes:
        """The whole body, at most ``limit`` bytes; raises :class:`UpstreamFailure` if the
        backend fails first or sends more."""
        self._limit = limit
        if self._pending_size > limit:
            self.close()
            raise UpstreamClosed(f"response larger than {limit} bytes")
        if not self.complete and self._failure is None:
            self._done = self._conn._loop.create_future()
            try:
                await self._done
            finally:
                self._done = None
        if self._failure is not None and not self.complete:
            raise UpstreamClosed(self._failure)
        body = b"".join(self._pending)
        self._pending = []
        return body

    def close(self) -> None:
        """Give up on the rest of the body: closing is how Ollama learns to stop generating."""
        if not self.complete:
            self._sink = None
            self._conn._abort()


def _deliver(sink: BodySink, chunks: list[bytes]) -> None:
    """The chunks of one read to ``sink``: one callback whether they are one or several (the
    connection's ``data_received`` does the same in line)."""
    if len(chunks) == 1:
        sink.on_chunk(chunks[0])
    else:
        sink.on_chunks(chunks)
