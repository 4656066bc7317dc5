"""Running a planned generation in real time: load, pace, stream, and record how it ended.

A route validates its request, plans the answer (:mod:`corral.testing.generation`) and builds a
:class:`Generation`. :func:`complete` then waits for the whole answer (``stream: false``), or
:func:`stream` paces it chunk by chunk through an :class:`Encoder`, which gives each API surface
its own wire format. Waiting uses the event loop's clock against absolute deadlines, so slow
chunks do not accumulate drift and an unpaced run (a huge rate) never sleeps.

When the client goes away, the server cancels the handler (``CancelledError``) or closes the
stream (``GeneratorExit``): either way the generation is recorded as cancelled at once.

Example::

    gen = Generation(state, "/api/chat", "llama3.2", info, plan, stream=True)
    return StreamResponse(200, stream(gen, encoder), headers)
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Protocol

from corral.testing.faults import (
    MODEL_ERROR_MESSAGE,
    NO_STREAM_FAULTS,
    ConnectionDrop,
    StreamFaults,
)
from corral.testing.generation import Plan, ToolCall
from corral.testing.models import ModelInfo
from corral.testing.payload import ApiError
from corral.testing.residency import LoadedModel
from corral.testing.state import SimState
from corral.testing.stats import GenerationRecord, Outcome
from corral.testing.timing import Schedule, Timings


class Encoder(Protocol):
    """How one API surface writes a generation: one bytes chunk per call."""

    def opening(self) -> list[bytes]: ...

    def thinking(self, text: str) -> bytes: ...

    def content(self, text: str) -> bytes: ...

    def tools(self, calls: list[ToolCall]) -> bytes: ...

    def closing(self, plan: Plan, timings: Timings) -> list[bytes]: ...

    def error(self, message: str) -> bytes: ...


class ModelError(ApiError):
    status = 500


class Generation:
    """One request's model work: what to say, and (once started) when and how it ended."""

    __slots__ = (
        "entry",
        "faults",
        "info",
        "keep_alive",
        "model",
        "num_ctx",
        "path",
        "plan",
        "record",
        "schedule",
        "state",
        "stream",
    )

    def __init__(
        self,
        state: SimState,
        path: str,
        model: str,
        info: ModelInfo,
        plan: Plan,
        *,
        stream: bool,
        keep_alive: float | None = None,
        num_ctx: int | None = None,
        faults: StreamFaults = NO_STREAM_FAULTS,
    ) -> None:
        self.state = state
        self.path = path
        self.model = model
        self.info = info
        self.plan = plan
        self.stream = stream
        self.keep_alive = keep_alive
        self.num_ctx = num_ctx
        self.faults = faults
        self.entry: LoadedModel | None = None
        self.record: GenerationRecord | None = None
        self.schedule: Schedule | None = None

    def start(self, now: float) -> Schedule:
        """Take the model (loading it if needed) and fix the timetable."""
        state, faults = self.state, self.faults
        self.entry = state.loaded.acquire(
            self.info, now, self.keep_alive, state.load_delay, self.num_ctx
        )
        first = faults.first_token_delay
        rate = faults.tokens_per_second
        self.schedule = Schedule.plan(
            now,
            self.entry.ready_at,
            state.first_token_delay if first is None else first,
            state.tokens_per_second if rate is None else rate,
        )
        self.record = state.stats.begin(self.path, self.model, now, self.stream)
        return self.schedule

    def finish(self, outcome: Outcome, now: float) -> None:
        """Give the model back and record the outcome; safe to call more than once."""
        if self.entry is not None:
            self.state.loaded.release(self.entry, now)
            self.entry = None
        if self.record is not None:
            self.state.stats.finish(self.record, outcome, now)


async def complete(gen: Generation) -> Timings:
    """Wait as long as the whole answer takes, then return its timings (``stream: false``)."""
    loop = asyncio.get_running_loop()
    schedule = gen.start(loop.time())
    eval_count = gen.plan.eval_count
    try:
        delay = schedule.done(eval_count) - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
    except asyncio.CancelledError:
        gen.finish(Outcome.CANCELLED, loop.time())
        raise
    if gen.faults.drop_after_chunks is not None:
        gen.finish(Outcome.DROPPED, loop.time())
        raise ConnectionDrop("simulated connection drop")
    if gen.faults.error_after_chunks is not None:
        gen.finish(Outcome.FAILED, loop.time())
        raise ModelError(MODEL_ERROR_MESSAGE)
    gen.finish(Outcome.COMPLETED, loop.time())
    return schedule.timings(eval_count)


def stream(gen: Generation, encoder: Encoder) -> AsyncIterator[bytes]:
    """The paced chunks of ``gen``, cut short when a stream fault says so."""
    chunks = _paced(gen, encoder)
    if gen.faults.cuts_stream:
        return _cut(gen, chunks, encoder)
    return chunks


async def _paced(gen: Generation, encoder: Encoder) -> AsyncIterator[bytes]:
    loop = asyncio.get_running_loop()
    clock = loop.time
    sleep = asyncio.sleep
    schedule = gen.start(clock())
    plan = gen.plan
    first, interval = schedule.first, schedule.interval
    record = gen.record
    assert record is not None
    try:
        for chunk in encoder.opening():
            yield chunk
        tokens = 0
        for encode, texts in ((encoder.thinking, plan.thinking), (encoder.content, plan.content)):
            for text in texts:
                delay = first + tokens * interval - clock()
                if delay > 0:
                    await sleep(delay)
                yield encode(text)
                tokens += 1
                record.chunks = tokens
        if plan.tool_calls:
            tokens += plan.tool_tokens
            delay = first + (tokens - 1) * interval - clock()
            if delay > 0:
                await sleep(delay)
            yield encoder.tools(plan.tool_calls)
        delay = schedule.done(plan.eval_count) - clock()
        if delay > 0:
            await sleep(delay)
        # Release before the final chunk: a client reading it and then asking /api/ps must see
        # the model's new expiry, as with Ollama.
        gen.finish(Outcome.COMPLETED, clock())
        for chunk in encoder.closing(plan, schedule.timings(plan.eval_count)):
            yield chunk
    except (asyncio.CancelledError, GeneratorExit):
        gen.finish(Outcome.CANCELLED, clock())
        raise
    finally:
        gen.finish(Outcome.FAILED, clock())  # only if nothing above gave a verdict


async def _cut(
    gen: Generation, chunks: AsyncIterator[bytes], encoder: Encoder
) -> AsyncIterator[bytes]:
    drop_after = gen.faults.drop_after_chunks
    error_after = gen.faults.error_after_chunks
    sent = 0
    try:
        async for chunk in chunks:
            if sent == error_after:
                yield encoder.error(MODEL_ERROR_MESSAGE)
                gen.finish(Outcome.FAILED, asyncio.get_running_loop().time())
                return
            if sent == drop_after:
                gen.finish(Outcome.DROPPED, asyncio.get_running_loop().time())
                raise ConnectionDrop("simulated connection drop")
            yield chunk
            sent += 1
    finally:
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()


async def hang(state: SimState, path: str) -> None:
    """Accept the request and never answer; recorded so a test sees when the client gives up."""
    loop = asyncio.get_running_loop()
    record = state.stats.begin(path, "", loop.time(), stream=False)
    try:
        await loop.create_future()
    finally:
        state.stats.finish(record, Outcome.CANCELLED, loop.time())


async def load(
    state: SimState, info: ModelInfo, keep_alive: float | None, num_ctx: int | None
) -> None:
    """Load ``info`` (an empty prompt), waiting for the load to finish."""
    loop = asyncio.get_running_loop()
    entry = state.loaded.acquire(info, loop.time(), keep_alive, state.load_delay, num_ctx)
    try:
        delay = entry.ready_at - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
    finally:
        state.loaded.release(entry, loop.time())
