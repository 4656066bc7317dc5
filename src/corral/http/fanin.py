"""Several upstream bodies read together, as they arrive, into one client stream.

:class:`Fanin` moves each backend's body chunks into one queue from protocol callbacks (pausing a
backend that runs too far ahead); :class:`FaninStream` turns them into the client's stream
through a :class:`Combiner`: :class:`~corral.http.fanout.ProgressMerger` for merged pull and
create progress, or :class:`Passthrough` for one backend's stream unchanged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import TYPE_CHECKING, Any, Protocol

import orjson

if TYPE_CHECKING:
    from corral.backends.upstream import UpstreamResponse

log = logging.getLogger("corral.fleet")

# A reader this far behind one upstream stops reading it until it catches up.
_HIGH_WATER = 1 << 20

Event = tuple[int, bytes | None, str | None]  # (target, chunk, failure); (i, None, None) = end


class _Feed:
    """A BodySink moving one upstream body into the fan-in's queue, from protocol callbacks."""

    __slots__ = ("_index", "_paused", "_pending", "_queue", "_upstream")

    def __init__(self, index: int, queue: asyncio.Queue[Event], upstream: UpstreamResponse) -> None:
        self._index = index
        self._queue = queue
        self._upstream = upstream
        self._pending = 0
        self._paused = False

    def on_chunk(self, data: bytes) -> None:
        self._queue.put_nowait((self._index, data, None))
        self._pending += len(data)
        if not self._paused and self._pending > _HIGH_WATER:
            self._paused = True
            self._upstream.pause_reading()

    def on_chunks(self, chunks: list[bytes]) -> None:
        for data in chunks:
            self.on_chunk(data)

    def on_complete(self) -> None:
        self._queue.put_nowait((self._index, None, None))

    def on_failure(self, reason: str) -> None:
        self._queue.put_nowait((self._index, None, reason))

    def taken(self, size: int) -> None:
        self._pending -= size
        if self._paused and self._pending <= _HIGH_WATER // 2:
            self._paused = False
            self._upstream.resume_reading()


class Fanin:
    """Several targets' answers to one request, chunk by chunk as they arrive, in one queue.

    Each target ends up either ``attach``-ed (its body streams in) or ``refuse``-d (it answered
    with an error, or not at all). ``ready`` is set at the first attach, or once every target
    was refused. ``close`` cancels what is still starting and closes what is streaming.

    Example::

        fanin = Fanin(2)
        fanin.spawn(0, start_target(fanin, 0))   # calls fanin.attach(0, upstream) or refuse
        await fanin.ready.wait()
        index, chunk, failure = await fanin.next()
        fanin.close()
    """

    def __init__(self, count: int) -> None:
        self.count = count
        self.queue: asyncio.Queue[Event] = asyncio.Queue()
        self.ready = asyncio.Event()
        self.streaming = 0
        self.refused = 0
        self._feeds: dict[int, _Feed] = {}
        self._settled: set[int] = set()
        self._upstreams: list[UpstreamResponse] = []
        self._tasks: list[asyncio.Task[None]] = []

    def spawn(self, index: int, start: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(start)
        self._tasks.append(task)
        task.add_done_callback(lambda t: self._started(index, t))

    def _started(self, index: int, task: asyncio.Task[None]) -> None:
        if task.cancelled() or task.exception() is None:
            return
        log.error("fan-out to target %d failed", index, exc_info=task.exception())
        # Settle the target all the same, or the stream would wait for it forever.
        self.refuse(index, "internal error")

    def attach(self, index: int, upstream: UpstreamResponse) -> None:
        if index in self._settled:
            upstream.close()
            return
        feed = _Feed(index, self.queue, upstream)
        self._feeds[index] = feed
        self._upstreams.append(upstream)
        self.streaming += 1
        self._settle(index)
        upstream.relay(feed)

    def refuse(self, index: int, reason: str) -> None:
        if index in self._settled:
            return
        self.refused += 1
        self.queue.put_nowait((index, None, reason))
        self._settle(index)

    def _settle(self, index: int) -> None:
        self._settled.add(index)
        if self.streaming or len(self._settled) >= self.count:
            self.ready.set()

    async def next(self) -> Event:
        event = await self.queue.get()
        index, chunk, _ = event
        if chunk is not None:
            self._feeds[index].taken(len(chunk))
        return event

    def close(self) -> None:
        """Stop everything still running: closing is how Ollama learns to stop pulling."""
        for task in self._tasks:
            task.cancel()
        for upstream in self._upstreams:
            upstream.close()


class Combiner(Protocol):
    """Turns the fan-in's events into the client's stream: :class:`ProgressMerger` or
    :class:`Passthrough`."""

    done: bool

    def feed(self, index: int, chunk: bytes) -> bytes: ...

    def finish(self, index: int, failure: str | None) -> bytes: ...


class Passthrough:
    """One target's stream as it is; a break ends it with an error line, as the relay does."""

    def __init__(self) -> None:
        self.done = False

    def feed(self, index: int, chunk: bytes) -> bytes:
        return chunk

    def finish(self, index: int, failure: str | None) -> bytes:
        self.done = True
        if failure is None:
            return b""
        return orjson.dumps({"error": f"upstream error: {failure}"}) + b"\n"


class FaninStream(AsyncIterator[bytes]):
    """The body of a StreamResponse: the fan-in's events through a combiner.

    ``aclose`` (the response calls it however sending ends, a client that left included) closes
    every upstream, then runs ``on_close`` once.

    Example::

        StreamResponse(200, FaninStream(fanin, ProgressMerger(names), on_close), headers)
    """

    def __init__(self, fanin: Fanin, combiner: Combiner, on_close: Callable[[], None]) -> None:
        self._fanin = fanin
        self._combiner = combiner
        self._on_close: Callable[[], None] | None = on_close

    async def __anext__(self) -> bytes:
        combiner = self._combiner
        while not combiner.done:
            index, chunk, failure = await self._fanin.next()
            if chunk is not None:
                out = combiner.feed(index, chunk)
            else:
                out = combiner.finish(index, failure)
            if out:
                return out
        await self.aclose()
        raise StopAsyncIteration

    async def aclose(self) -> None:
        self._fanin.close()
        if self._on_close is not None:
            on_close, self._on_close = self._on_close, None
            on_close()
