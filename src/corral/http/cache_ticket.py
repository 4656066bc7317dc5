"""What the cache does for one request: a :class:`Ticket` (hit, miss or bypass), and the
:class:`ReplayResponse` that answers a hit.

A ticket is made by :meth:`CacheStage.admit <corral.http.cache_stage.CacheStage.admit>`. Its
lookup is synchronous when it can be (a memory store); :meth:`Ticket.settle` does the part that
waits (an identical request in flight, a Redis round trip). On a miss it leads a flight, hands
its ``tap`` to the relay, and :meth:`Ticket.finish` keeps the answer when it ended whole.

Example::

    ticket = stage.admit(call, request)
    hit = ticket.hit if ticket.settled else await ticket.settle()
    if hit is None:
        ...                      # on to the backends; the relay calls ticket.finish()
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from corral.cache.capture import why_not_storable
from corral.cache.coalesce import Flight
from corral.cache.entry import CachedAnswer
from corral.cache.policy import Kind, Shape
from corral.cache.replay import CannotReplay, replay
from corral.context import Call
from corral.http.messages import HeaderList, Request, Response, ResponseSink

if TYPE_CHECKING:
    from corral.backends.upstream import UpstreamResponse
    from corral.http.cache_stage import CacheStage
    from corral.http.relay import RelayOutcome, RelayResponse

log = logging.getLogger("corral.cache")

HEADER = b"X-Corral-Cache"
_BYPASS = (HEADER, b"bypass")
_MISS = (HEADER, b"miss")
_HIT = (HEADER, b"hit")
# A follower whose leaders keep failing stops waiting and asks a backend itself.
MAX_FOLLOWS = 3


class ReplayResponse(Response):
    """A cached answer: sent whole, or chunked when the request asked for a stream.

    ``ReplayResponse(body, [(b"Content-Type", b"application/x-ndjson")], chunked=True)``
    """

    __slots__ = ("chunked",)

    def __init__(self, body: bytes, headers: HeaderList, *, chunked: bool) -> None:
        super().__init__(200, body, headers)
        self.chunked = chunked

    async def send(self, sink: ResponseSink) -> None:
        if not self.chunked:
            await super().send(sink)
            return
        sink.write_head(self.status, self.headers, chunked=True)
        if not sink.head_only:
            sink.write(self.body)
        sink.end()


class Ticket:
    """What the cache does for one request: its status, the hit, and the answer it keeps.

    ``ticket.header`` is ``(b"X-Corral-Cache", b"hit" | b"miss" | b"bypass")``; ``ticket.hit``
    the answer when it is a hit; ``ticket.tap`` the chunks to keep on a miss.
    """

    __slots__ = (
        "_following",
        "_headers",
        "_stage",
        "_state",
        "flight",
        "header",
        "hit",
        "include_usage",
        "key",
        "kind",
        "settled",
        "shape",
        "tap",
    )

    def __init__(
        self, stage: CacheStage | None, request: Request | None, kind: Kind, key: str, call: Call
    ) -> None:
        self._stage = stage
        self._state = request.state if request is not None else None
        self.kind = kind
        self.key = key
        self.shape: Shape = kind.shape(call.stream)
        options = call.fields.get("stream_options")
        self.include_usage = isinstance(options, dict) and options.get("include_usage") is True
        self.header = _BYPASS
        self.hit: Response | None = None
        self.settled = True
        self.flight: Flight[CachedAnswer] | None = None
        self._following: Flight[CachedAnswer] | None = None
        # The answer's chunks as the relay passes them on; None when it is not to be kept.
        self.tap: list[bytes] | None = None
        self._headers: Sequence[tuple[bytes, bytes]] = ()  # the answer's, for its content type

    def begin(self, *, refresh: bool) -> None:
        stage = self._stage
        assert stage is not None
        flights = stage.flights
        flight = flights.get(self.key)
        if refresh:
            stage.counters.bypasses += 1
            self._set_status("bypass", _BYPASS)
            self._capture()
            if flight is None:
                self.flight = flights.lead(self.key)
            return
        if flight is not None:
            self._following = flight
            self.settled = False
            return
        local = stage.local
        if local is None:
            self.flight = flights.lead(self.key)
            self.settled = False  # one round trip to the store, in settle()
            return
        value = local.get_nowait(self.key)
        answer = CachedAnswer.decode(value) if value is not None else None
        if answer is None or not self._use(answer):
            self.flight = flights.lead(self.key)
            self._miss()

    async def settle(self) -> Response | None:
        """The part of the lookup that waits: for an identical request in flight, or for a
        remote store. Returns the hit, or None for a miss."""
        stage = self._stage
        assert stage is not None
        self.settled = True
        following = self._following
        if following is None:
            answer = await stage.fetch(self.key)
            if answer is not None and self._use(answer):
                self._land(answer)
                return self.hit
            self._miss()
            return None
        for _ in range(MAX_FOLLOWS):
            answer = await following.wait()
            if answer is not None and self._use(answer):
                stage.counters.coalesced += 1
                return self.hit
            if not following.retry:
                break  # a whole answer not worth keeping: asking again behind a leader won't be
            # The leader failed: the first follower to wake leads the rest.
            flight = stage.flights.get(self.key)
            if flight is None:
                self.flight = stage.flights.lead(self.key)
                break
            following = flight
        self._following = None
        self._miss()
        return None

    def attach(self, relay: RelayResponse) -> None:
        """Capture the answer ``relay`` passes on, up to the largest size worth keeping."""
        if self.tap is not None:
            assert self._stage is not None
            relay.tap = self.tap
            relay.tap_limit = self._stage.max_entry_size
            # Read now: once the relay has written them, it lets its headers go.
            self._headers = relay.headers

    def finish(self, upstream: UpstreamResponse, outcome: RelayOutcome) -> None:
        """The relay ended: keep the answer if it is whole and good, and share it."""
        stage = self._stage
        tap, self.tap = self.tap, None
        answer = None
        whole = upstream.complete and outcome.error is None
        if (
            stage is not None
            and tap is not None
            and whole
            and upstream.status == 200
            and outcome.bytes_sent <= stage.max_entry_size
        ):
            answer = _answer(self.kind, self.shape, self._headers, b"".join(tap))
            if answer is not None:
                stage.keep(self.key, answer)
        # A backend that failed (5xx, an error line after a 200, a broken stream) or a client
        # that left: another try may well succeed. Anything else would come out the same.
        failed = not whole or upstream.status >= 500 or _ends_in_error(outcome.last_chunk)
        self._land(answer, retry=answer is None and failed)

    def abandon(self) -> None:
        """The request ended before an answer (an error, or its client left)."""
        self.tap = None
        self._land(None, retry=True)

    def _land(self, answer: CachedAnswer | None, *, retry: bool = False) -> None:
        flight, self.flight = self.flight, None
        if flight is not None and self._stage is not None:
            self._stage.flights.land(flight, answer, retry=retry)

    def _use(self, answer: CachedAnswer) -> bool:
        """Make ``answer`` this request's hit, in the shape it asked for."""
        try:
            content_type, body = replay(
                self.kind, answer, self.shape, include_usage=self.include_usage
            )
        except CannotReplay as err:
            log.debug("cached answer not replayable as %s: %s", self.shape, err)
            return False
        headers = [(b"Content-Type", content_type), _HIT]
        self.hit = ReplayResponse(body, headers, chunked=self.shape != "json")
        assert self._stage is not None
        self._stage.counters.hits += 1
        self._set_status("hit", _HIT)
        return True

    def _miss(self) -> None:
        assert self._stage is not None
        self._stage.counters.misses += 1
        self._set_status("miss", _MISS)
        self._capture()

    def _capture(self) -> None:
        self.tap = []
        if self._state is not None:
            self._state["cache_ticket"] = self

    def _set_status(self, status: str, header: tuple[bytes, bytes]) -> None:
        self.header = header
        if self._state is not None:
            self._state["cache"] = status


def _ends_in_error(last_chunk: bytes) -> bool:
    # Ollama's error line after a 200, or the SSE event its /v1 layer sends instead; the last
    # chunk read may carry more than one line.
    last_line = last_chunk.rstrip().rpartition(b"\n")[2]
    return last_line.startswith((b'{"error"', b'data: {"error"'))


def _answer(
    kind: Kind, shape: Shape, headers: Sequence[tuple[bytes, bytes]], body: bytes
) -> CachedAnswer | None:
    content_type = b""
    for name, value in headers:
        lname = name.lower()
        if lname == b"content-encoding" and value.lower() != b"identity":
            return None  # kept as Ollama's plain bytes only
        if lname == b"content-type":
            content_type = value
    reason = why_not_storable(kind, shape, body)
    if reason is not None:
        log.debug("answer not cached: %s", reason)
        return None
    return CachedAnswer(shape, content_type, body)


# Requests the cache does not touch share one ticket: nothing to allocate on that path.
BYPASS = Ticket(
    None, None, Kind("bypass", False, None), "", Call("ollama", "", None, False, b"", {})
)
