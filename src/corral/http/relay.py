"""The streaming relay: a backend's answer, moved to the client as it arrives.

:class:`RelayResponse` writes the backend's status and headers (minus hop-by-hop ones, plus
corral's own), then hands the body over chunk by chunk from the upstream connection's
``data_received`` straight into the client's transport. Nothing awaits per chunk, nor for the
end: once the head is written the relay is handed off to the client connection
(``ResponseSink.hand_off``), the request's task ends, and the relay tells the connection when the
answer is whole. Flow control goes both ways: a full client socket pauses reading from the
backend, and a drained one resumes it.

Failure after the first byte cannot change the status any more. For a chunked (streaming) answer
corral ends the stream with a final ``{"error": "..."}`` line, as Ollama itself does (an SSE
``data:`` event on ``/v1``); a fixed-length answer is cut by closing the connection, so the client
sees a truncated body instead of mistaking half an answer for a whole one.

When the client goes away, the connection tells the relay (``client_gone``), which closes the
upstream connection at once: that is how Ollama learns to stop generating.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import orjson

from corral.http.messages import HeaderList, Response, ResponseSink

if TYPE_CHECKING:
    from corral.backends.upstream import UpstreamResponse

log = logging.getLogger("corral.http")

_HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"transfer-encoding",
        b"te",
        b"trailer",
        b"upgrade",
    }
)


class RelayOutcome:
    """How a relay ended, for the access log and usage records."""

    __slots__ = ("bytes_sent", "error", "first_byte_at", "last_chunk", "previous_chunk")

    def __init__(self) -> None:
        self.bytes_sent = 0
        self.error: str | None = None
        self.first_byte_at: float | None = None
        # The last two chunks: the final NDJSON line carries Ollama's token counts; on /v1 the
        # usage chunk comes just before "data: [DONE]".
        self.last_chunk = b""
        self.previous_chunk = b""

    @property
    def tail(self) -> bytes:
        return self.previous_chunk + self.last_chunk


class RelayResponse(Response):
    """Relays ``upstream`` to the client; ``on_done`` runs once, however the relay ends."""

    __slots__ = (
        "_chunked",
        "_handed_off",
        "_sink",
        "_sse",
        "_upstream",
        "on_done",
        "outcome",
        "tap",
        "tap_limit",
    )

    def __init__(
        self,
        upstream: UpstreamResponse,
        extra_headers: HeaderList,
        *,
        sse_errors: bool = False,
        on_done: Callable[[RelayOutcome], None] | None = None,
    ) -> None:
        headers = [(n, v) for n, v in upstream.headers if n.lower() not in _HOP_BY_HOP]
        headers.extend(extra_headers)
        super().__init__(upstream.status, b"", headers)
        self._upstream = upstream
        self._sse = sse_errors
        self._sink: ResponseSink | None = None  # None again once the relay has ended
        self._handed_off = False
        self._chunked = False
        self.on_done = on_done
        self.outcome = RelayOutcome()
        # Set by the cache stage when the answer is to be kept: every chunk is appended, until
        # the answer grows past tap_limit bytes (then it is not kept, and the tap is dropped).
        self.tap: list[bytes] | None = None
        self.tap_limit = 0

    async def send(self, sink: ResponseSink) -> None:
        upstream = self._upstream
        chunked = upstream.chunked_upstream or upstream.length_unknown
        self._write_head(sink, chunked)
        self._sink = sink
        self._chunked = chunked
        if upstream.complete and not sink.head_only:
            # The common non-streaming case: the whole answer is already here.
            try:
                upstream.relay(self)
            finally:
                self._end()
            return
        # The rest comes through the backend's callbacks, which pass it on and end the answer.
        self._handed_off = True
        sink.hand_off(self)
        try:
            upstream.relay(self)  # what has arrived already; it may end the answer at once
        except BaseException:
            self._end()
            raise

    def _end(self) -> None:
        """However the relay ended, once: the upstream let go, ``on_done`` told, and the
        connection too when the relay was handed off to it."""
        sink = self._sink
        if sink is None:
            return
        self._sink = None
        upstream = self._upstream
        if not upstream.complete:
            upstream.close()
        sink.set_flow_listener(None)
        # Break the relay <-> upstream reference cycle now: left to the cycle collector,
        # thousands of them a second turn into full collections that stall every stream.
        upstream.detach()
        try:
            if self.on_done is not None:
                callback, self.on_done = self.on_done, None
                callback(self.outcome)
        except Exception:
            if not self._handed_off:
                raise  # the request's task reports it
            # Here in the backend's (or the client's) protocol callbacks, no task is left to
            # report a bug, and it must not pass for a broken backend.
            log.exception("unhandled error at the end of a relayed answer")
        finally:
            if self._handed_off:
                sink.answered()

    def _write_head(self, sink: ResponseSink, chunked: bool) -> None:
        headers = self.headers
        if chunked:
            headers = [(n, v) for n, v in headers if n.lower() != b"content-length"]
        sink.write_head(self.status, headers, chunked=chunked)
        # Written (the sink holds the head's bytes until the first body bytes): a stream can
        # last minutes, and nothing reads these again, so neither side keeps them meanwhile.
        self.headers = []
        self._upstream.headers = []

    # ---- BodySink: called from the upstream connection's callbacks --------------------------

    # Both account for the chunks on their way out (the outcome's figures, the cache's copy)
    # in line: they run for every read of every stream.

    def on_chunk(self, data: bytes) -> None:
        outcome = self.outcome
        if outcome.first_byte_at is None:
            outcome.first_byte_at = time.perf_counter()
        outcome.bytes_sent += len(data)
        outcome.previous_chunk = outcome.last_chunk
        outcome.last_chunk = data
        if self.tap is not None:
            self._keep((data,))
        sink = self._sink
        assert sink is not None
        sink.write(data)

    def on_chunks(self, chunks: list[bytes]) -> None:
        outcome = self.outcome
        if outcome.first_byte_at is None:
            outcome.first_byte_at = time.perf_counter()
        outcome.bytes_sent += sum(map(len, chunks))
        outcome.previous_chunk = chunks[-2] if len(chunks) > 1 else outcome.last_chunk
        outcome.last_chunk = chunks[-1]
        if self.tap is not None:
            self._keep(chunks)
        sink = self._sink
        assert sink is not None
        sink.write_many(chunks)

    def _keep(self, chunks: Iterable[bytes]) -> None:
        """The cache's copy, until the answer grows past what is worth keeping (then none)."""
        tap = self.tap
        assert tap is not None
        if self.outcome.bytes_sent <= self.tap_limit:
            tap.extend(chunks)
        else:
            self.tap = None

    def on_complete(self) -> None:
        sink = self._sink
        assert sink is not None
        sink.end()
        self._settle()

    def on_failure(self, reason: str) -> None:
        sink = self._sink
        assert sink is not None
        self.outcome.error = reason
        if self._chunked and not sink.head_only:
            message = f"upstream error: {reason}"
            if self._sse:
                line = b"data: " + orjson.dumps({"error": {"message": message}}) + b"\n\n"
            else:
                line = orjson.dumps({"error": message}) + b"\n"
            sink.write(line)
            sink.end()
        else:
            abort = getattr(sink, "abort", None)
            if abort is not None:
                abort()
        self._settle()

    def _settle(self) -> None:
        # A relay that was not handed off ends in send(), right after the upstream's relay().
        if self._handed_off:
            self._end()

    # ---- HandedOff: the client's socket fills and drains, or closes -------------------------

    def pause_writing(self) -> None:
        self._upstream.pause_reading()

    def resume_writing(self) -> None:
        self._upstream.resume_reading()

    def client_gone(self) -> None:
        self._end()
