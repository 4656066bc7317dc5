"""JSON logs, on standard error or in a size-rotated file (``log_file``): lifecycle events
through ``logging``, and one access-log line per request through :class:`AccessLog`, which never
makes a request wait on I/O.

The access log appends a dict to a bounded deque; a background task serialises and writes them
in batches. A full deque drops lines and counts them (``dropped``) instead of blocking.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import Callable
from logging.handlers import RotatingFileHandler
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import orjson

from corral.tasks import cancel

if TYPE_CHECKING:
    from corral.http.messages import Request


def milliseconds(seconds: float) -> float:
    """``seconds`` in milliseconds, to the microsecond: ``round(seconds * 1000, 3)`` for a
    duration, at a third of its cost (``round`` to digits goes through a decimal string)."""
    return int(seconds * 1e6 + 0.5) / 1000


# What a request's state adds to its access-log line when set, in this order.
_LOGGED_STATE = (
    "model", "backend", "cache", "queue_ms", "prompt_tokens", "generated_tokens", "error",
)  # fmt: skip


def access_entry(
    request: Request, status: int, size: int, now: float, first_byte_at: float | None
) -> dict[str, Any]:
    """The access-log line of ``request``, answered with ``status`` and ``size`` body bytes,
    ended at ``now`` (``time.perf_counter``); its first byte left at ``first_byte_at``."""
    state = request.state
    started = state.get("started", now)
    entry: dict[str, Any] = {
        "request_id": state.get("request_id"),
        "client": state.get("client_ip") or request.client[0],
        "method": request.method,
        "route": state.get("route", "unmatched"),
        "status": status,
        "bytes": size,
        "duration_ms": milliseconds(now - started),
    }
    for key in _LOGGED_STATE:
        if key in state:
            value = state[key]
            if value is not None:
                entry[key] = value
    if first_byte_at is not None:
        entry["ttfb_ms"] = milliseconds(first_byte_at - started)
    return entry


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        extra = getattr(record, "fields", None)
        if isinstance(extra, dict):
            entry.update(extra)
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def configure_logging(
    level: str = "info",
    stream: Any = None,
    *,
    log_file: Path | None = None,
    max_bytes: int = 10 * 1024 * 1024,
    backups: int = 5,
) -> logging.Handler:
    """JSON lines for the ``corral`` loggers, to ``log_file`` (rotated at ``max_bytes``, keeping
    ``backups`` old files) or to standard error. Returns the handler, which the access log
    shares so both kinds of line land in one place."""
    handler: logging.Handler
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handler = RotatingFileHandler(
            log_file, maxBytes=max_bytes, backupCount=backups, encoding="utf-8"
        )
    else:
        handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("corral")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
    return handler


def raw_writer(handler: logging.Handler) -> Callable[[bytes], None]:
    """Write already-formatted lines through ``handler``'s stream, rotating a log file when due."""
    if isinstance(handler, RotatingFileHandler):
        rotating = handler

        def write_file(data: bytes) -> None:
            text = data.decode()
            probe = logging.makeLogRecord({"msg": text})
            rotating.acquire()
            try:
                if rotating.shouldRollover(probe):
                    rotating.doRollover()
                if rotating.stream is None:
                    rotating.stream = rotating._open()
                rotating.stream.write(text)
                rotating.stream.flush()
            finally:
                rotating.release()

        return write_file

    stream = getattr(handler, "stream", None) or sys.stderr

    def write_stream(data: bytes) -> None:
        buffer = getattr(stream, "buffer", None)
        if buffer is not None:
            buffer.write(data)
        else:
            stream.write(data.decode())
        stream.flush()

    return write_stream


class AccessLog:
    """One JSON line per finished request, written off the request path.

    A line is serialised when it is recorded (a fraction of a microsecond with orjson) into one
    growing buffer, which a background task writes out every ``interval``. Holding the entries
    themselves until then would keep thousands of dicts alive per interval at high rates, and
    allocating and freeing that much memory each time costs more than the serialisation.
    Past ``capacity`` bytes waiting (the log's destination is stuck), lines are dropped and
    counted.

    >>> log = AccessLog(capacity=1024)
    >>> log.record({"status": 200})
    >>> bytes(log.pending)
    b'{"status":200}\\n'
    """

    def __init__(
        self,
        stream: BinaryIO | None = None,
        capacity: int = 16 * 1024 * 1024,
        interval: float = 0.2,
        *,
        write: Callable[[bytes], None] | None = None,
    ) -> None:
        self._stream = stream
        self._write = write
        self.pending = bytearray()
        self.capacity = capacity
        self.interval = interval
        self.dropped = 0
        self._task: asyncio.Task[None] | None = None

    def record(self, entry: dict[str, Any]) -> None:
        pending = self.pending
        if len(pending) >= self.capacity:
            self.dropped += 1
            return
        pending += orjson.dumps(entry, default=str, option=orjson.OPT_APPEND_NEWLINE)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="access-log")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        data = bytes(self.pending)
        self.pending.clear()
        with contextlib.suppress(OSError, ValueError):
            if self._write is not None:
                self._write(data)
            else:
                stream = self._stream or sys.stderr.buffer
                stream.write(data)
                stream.flush()

    async def aclose(self) -> None:
        await cancel(self._task)
        self._task = None
        self.flush()
