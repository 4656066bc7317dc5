"""The load client for the streaming scenarios: raw connections on uvloop, parsed by httptools.

It runs in a process of its own, pinned next to the simulator, and is built to cost little per
chunk (one ``perf_counter`` and one ``bytes.count`` in a protocol callback, no coroutine per chunk)
so that at 500 streams it measures the server, not itself. Two shapes of load:

``streams``
    N requests, one connection each, started evenly over a ramp. Records each stream's time to
    first body chunk and the gaps between its chunks, and the CPU time of the watched processes
    while all N stream at once. With ``--hold`` the streams are held open instead, and the peak
    RSS of the watched ``corral`` process is sampled.
``loop``
    C keep-alive connections in a closed loop: each sends its next request as soon as the
    previous answer ends. Counts answers and NDJSON lines per second after a warm-up.

It prints one JSON object on standard output.

Example::

    python -m bench.loadgen streams --port 8080 --streams 500 --ramp 1 --watch corral=4242 \\
        --body '{"model":"llama3.2","messages":[{"role":"user","content":"hi"}],"stream":true}'
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

import httptools
import uvloop

from bench.stats import percentile
from bench.watch import CpuSnapshot, Watch

# Connections opened at once: a listener's accept backlog can be small (asyncio's default is 100),
# and an overflowing backlog turns into one-second SYN retries.
CONNECT_CONCURRENCY = 64
# A CPU window shorter than this says more about timer granularity than about the server.
MIN_WINDOW = 0.2
RSS_SAMPLE_INTERVAL = 0.1


def build_request(host: str, port: int, path: str, body: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("ascii") + body


class Listener(Protocol):
    def on_first_body(self, exchange: Exchange) -> None: ...

    def on_complete(self, exchange: Exchange) -> None: ...

    def on_lost(self, exchange: Exchange) -> None: ...


class Exchange(asyncio.Protocol):
    """One client connection: sends prepared requests, one at a time, and notes what comes back."""

    def __init__(self, listener: Listener, *, record_times: bool) -> None:
        self.listener = listener
        self.record_times = record_times
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.status = 0
        self.sent_at = 0.0
        self.times: list[float] = []
        self.lines = 0
        self.responses = 0
        self.in_flight = False
        self.lost = False
        self.broken: str | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.listener.on_lost(self)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as err:
            self.broken = f"invalid HTTP response: {err}"
            self.abort()

    def send(self, request: bytes) -> None:
        if self.transport is None or self.lost:
            return
        self.status = 0
        self.in_flight = True
        self.sent_at = time.perf_counter()
        self.transport.write(request)

    def abort(self) -> None:
        if self.transport is not None and not self.lost:
            self.transport.abort()

    # httptools callbacks

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        self.lines += body.count(b"\n")
        if self.record_times:
            now = time.perf_counter()
            if not self.times:
                self.listener.on_first_body(self)
            self.times.append(now)

    def on_message_complete(self) -> None:
        self.in_flight = False
        self.responses += 1
        self.listener.on_complete(self)


async def open_connections(
    host: str, port: int, count: int, listener: Listener, *, record_times: bool
) -> list[Exchange]:
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def one() -> Exchange:
        async with gate:
            _, protocol = await loop.create_connection(
                lambda: Exchange(listener, record_times=record_times), host, port
            )
        return protocol

    return list(await asyncio.gather(*(one() for _ in range(count))))


# ---- N streams over a ramp -------------------------------------------------------------------


@dataclass(slots=True)
class StreamSpec:
    host: str
    port: int
    path: str
    body: bytes
    streams: int
    ramp: float
    timeout: float
    hold: float | None = None
    watch: dict[str, int] = field(default_factory=dict)


class StreamRun:
    """``streams`` mode: see the module docstring."""

    def __init__(self, spec: StreamSpec) -> None:
        self.spec = spec
        self.watch = Watch(spec.watch, include_self="loadgen")
        self.request = build_request(spec.host, spec.port, spec.path, spec.body)
        self.exchanges: list[Exchange] = []
        self.streaming = 0
        self.ended = 0
        self.closing = False
        self.statuses: Counter[int] = Counter()
        self.cpu_marks: dict[str, CpuSnapshot] = {}
        self._all_streaming: asyncio.Future[None] | None = None
        self._all_ended: asyncio.Future[None] | None = None

    # Listener

    def on_first_body(self, exchange: Exchange) -> None:
        self.streaming += 1
        if self.streaming == self.spec.streams:
            self.cpu_marks["all_streaming"] = self.watch.cpu()
            _resolve(self._all_streaming)

    def on_complete(self, exchange: Exchange) -> None:
        self.statuses[exchange.status] += 1
        if "first_ended" not in self.cpu_marks:
            self.cpu_marks["first_ended"] = self.watch.cpu()
        exchange.abort()

    def on_lost(self, exchange: Exchange) -> None:
        if self.closing:
            return
        if exchange.responses == 0 and exchange.broken is None:
            exchange.broken = "connection closed before the stream ended"
        self.ended += 1
        if self.ended == self.spec.streams:
            _resolve(self._all_ended)

    async def run(self) -> dict[str, Any]:
        spec = self.spec
        loop = asyncio.get_running_loop()
        self._all_streaming = loop.create_future()
        self._all_ended = loop.create_future()
        result: dict[str, Any] = {"streams": spec.streams}
        if spec.hold is not None:
            result["rss_idle_mb"] = self.watch.rss_mb("corral")
        self.exchanges = await open_connections(
            spec.host, spec.port, spec.streams, self, record_times=True
        )
        self.cpu_marks["start"] = self.watch.cpu()
        start = loop.time() + 0.01
        step = spec.ramp / spec.streams
        for index, exchange in enumerate(self.exchanges):
            loop.call_at(start + index * step, exchange.send, self.request)
        deadline = loop.time() + spec.timeout
        everyone_streams = await _wait(self._all_streaming, deadline - loop.time())
        if spec.hold is not None:
            result.update(await self._hold(spec.hold))
            self.closing = True
            for exchange in self.exchanges:
                exchange.abort()
        else:
            await _wait(self._all_ended, deadline - loop.time())
            self.cpu_marks["end"] = self.watch.cpu()
            self.closing = True
            for exchange in self.exchanges:
                exchange.abort()
        result["all_streamed_at_once"] = everyone_streams
        result.update(self._summary())
        return result

    async def _hold(self, seconds: float) -> dict[str, Any]:
        peak = 0.0
        loop = asyncio.get_running_loop()
        until = loop.time() + seconds
        while True:
            rss = self.watch.rss_mb("corral")
            peak = max(peak, rss or 0.0)
            if loop.time() >= until:
                break
            await asyncio.sleep(RSS_SAMPLE_INTERVAL)
        open_streams = sum(1 for e in self.exchanges if e.in_flight and not e.lost and e.times)
        return {"rss_open_mb": round(peak, 2), "streams_open": open_streams}

    def _summary(self) -> dict[str, Any]:
        ttft: list[float] = []
        gaps: list[float] = []
        chunks = 0
        broken: Counter[str] = Counter()
        for exchange in self.exchanges:
            times = exchange.times
            chunks += len(times)
            if times:
                ttft.append(times[0] - exchange.sent_at)
                gaps.extend(b - a for a, b in itertools.pairwise(times))
            if exchange.status and exchange.responses == 0:
                self.statuses[exchange.status] += 1
            if exchange.broken is not None:
                broken[exchange.broken] += 1
            elif exchange.responses == 0 and self.spec.hold is None:
                broken["stream did not end within the timeout"] += 1
        marks = self.cpu_marks
        start, end = marks.get("all_streaming"), marks.get("first_ended")
        full = start is not None and end is not None and end.at - start.at >= MIN_WINDOW
        if not full:
            start, end = marks["start"], marks.get("end", marks["start"])
        assert start is not None and end is not None
        return {
            "chunks": chunks,
            "ttft_ms": _ms_percentiles(ttft),
            "gap_ms": _ms_percentiles(gaps),
            "cpu_percent": Watch.percent(start, end),
            "cpu_window_s": round(end.at - start.at, 3),
            "cpu_window_all_streaming": full,
            "statuses": {str(code): count for code, count in sorted(self.statuses.items())},
            "broken": dict(broken),
        }


# ---- closed loop -----------------------------------------------------------------------------


@dataclass(slots=True)
class LoopSpec:
    host: str
    port: int
    path: str
    body: bytes
    connections: int
    warmup: float
    duration: float
    watch: dict[str, int] = field(default_factory=dict)


class LoopRun:
    """``loop`` mode: see the module docstring."""

    def __init__(self, spec: LoopSpec) -> None:
        self.spec = spec
        self.watch = Watch(spec.watch, include_self="loadgen")
        self.request = build_request(spec.host, spec.port, spec.path, spec.body)
        self.exchanges: list[Exchange] = []
        self.stopping = False
        self.statuses: Counter[int] = Counter()
        self.lost = 0
        self.retired_responses = 0
        self.retired_lines = 0
        self._reconnects: set[asyncio.Task[None]] = set()

    def on_first_body(self, exchange: Exchange) -> None:
        pass

    def on_complete(self, exchange: Exchange) -> None:
        self.statuses[exchange.status] += 1
        if not self.stopping:
            exchange.send(self.request)

    def on_lost(self, exchange: Exchange) -> None:
        if self.stopping:
            return
        self.lost += 1
        self.retired_responses += exchange.responses
        self.retired_lines += exchange.lines
        if exchange in self.exchanges:
            self.exchanges.remove(exchange)
        task = asyncio.get_running_loop().create_task(self._replace())
        self._reconnects.add(task)
        task.add_done_callback(self._reconnects.discard)

    async def _replace(self) -> None:
        spec = self.spec
        try:
            (exchange,) = await open_connections(spec.host, spec.port, 1, self, record_times=False)
        except OSError:
            self.lost += 1
            return
        self.exchanges.append(exchange)
        exchange.send(self.request)

    def _totals(self) -> tuple[int, int]:
        responses = self.retired_responses + sum(e.responses for e in self.exchanges)
        lines = self.retired_lines + sum(e.lines for e in self.exchanges)
        return responses, lines

    async def run(self) -> dict[str, Any]:
        spec = self.spec
        self.exchanges = await open_connections(
            spec.host, spec.port, spec.connections, self, record_times=False
        )
        for exchange in self.exchanges:
            exchange.send(self.request)
        await asyncio.sleep(spec.warmup)
        responses0, lines0 = self._totals()
        cpu0 = self.watch.cpu()
        await asyncio.sleep(spec.duration)
        responses1, lines1 = self._totals()
        cpu1 = self.watch.cpu()
        self.stopping = True
        for exchange in self.exchanges:
            exchange.abort()
        for task in self._reconnects:
            task.cancel()
        wall = cpu1.at - cpu0.at
        return {
            "connections": spec.connections,
            "window_s": round(wall, 3),
            "responses": responses1 - responses0,
            "lines": lines1 - lines0,
            "responses_per_s": round((responses1 - responses0) / wall, 2),
            "lines_per_s": round((lines1 - lines0) / wall, 2),
            "cpu_percent": Watch.percent(cpu0, cpu1),
            "statuses": {str(code): count for code, count in sorted(self.statuses.items())},
            "broken": {"connection lost mid-run": self.lost} if self.lost else {},
        }


# ---- helpers and command line ----------------------------------------------------------------


def _resolve(future: asyncio.Future[None] | None) -> None:
    if future is not None and not future.done():
        future.set_result(None)


async def _wait(future: asyncio.Future[None] | None, seconds: float) -> bool:
    """Whether ``future`` resolved within ``seconds``."""
    assert future is not None
    try:
        await asyncio.wait_for(asyncio.shield(future), max(seconds, 0.0))
    except TimeoutError:
        return False
    return True


def _ms_percentiles(seconds: Sequence[float]) -> dict[str, float | None]:
    if not seconds:
        return {"p50": None, "p99": None}
    return {
        "p50": round(percentile(seconds, 50) * 1000, 4),
        "p99": round(percentile(seconds, 99) * 1000, 4),
    }


def _watch_pairs(items: Sequence[str]) -> dict[str, int]:
    pairs = {}
    for item in items:
        name, _, pid = item.partition("=")
        pairs[name] = int(pid)
    return pairs


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen", description=__doc__)
    modes = parser.add_subparsers(dest="mode", required=True)
    for mode in ("streams", "loop"):
        sub = modes.add_parser(mode)
        sub.add_argument("--host", default="127.0.0.1")
        sub.add_argument("--port", type=int, required=True)
        sub.add_argument("--path", default="/api/chat")
        sub.add_argument("--body", required=True, help="the JSON request body")
        sub.add_argument("--watch", action="append", default=[], metavar="NAME=PID")
    streams = modes.choices["streams"]
    streams.add_argument("--streams", type=int, required=True)
    streams.add_argument("--ramp", type=float, default=1.0, help="seconds to start them all")
    streams.add_argument("--timeout", type=float, default=60.0)
    streams.add_argument("--hold", type=float, default=None, help="hold open this long (s)")
    loop = modes.choices["loop"]
    loop.add_argument("--connections", type=int, required=True)
    loop.add_argument("--warmup", type=float, default=0.5)
    loop.add_argument("--duration", type=float, required=True)
    return parser.parse_args(argv)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    body = args.body.encode()
    watch = _watch_pairs(args.watch)
    if args.mode == "streams":
        spec = StreamSpec(
            args.host, args.port, args.path, body, args.streams, args.ramp, args.timeout,
            args.hold, watch,
        )  # fmt: skip
        return await StreamRun(spec).run()
    loop_spec = LoopSpec(
        args.host, args.port, args.path, body, args.connections, args.warmup, args.duration, watch
    )
    return await LoopRun(loop_spec).run()


def main(argv: Sequence[str] | None = None) -> None:
    result = uvloop.run(run(parse_args(argv)))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
