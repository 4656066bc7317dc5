"""JSON logs on standard error: lifecycle events through ``logging``, and one access-log line
per request through :class:`AccessLog`, which never makes a request wait on I/O.

The access log appends a dict to a bounded deque; a background task serialises and writes them
in batches. A full deque drops lines and counts them (``dropped``) instead of blocking.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections import deque
from typing import Any, BinaryIO

import orjson


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


def configure_logging(level: str = "info", stream: Any = None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("corral")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False


class AccessLog:
    """One JSON line per finished request, written off the request path.

    >>> log = AccessLog(capacity=10)
    >>> log.record({"status": 200})
    >>> len(log.pending)
    1
    """

    def __init__(
        self, stream: BinaryIO | None = None, capacity: int = 100_000, interval: float = 0.2
    ) -> None:
        self._stream = stream
        self.pending: deque[dict[str, Any]] = deque()
        self.capacity = capacity
        self.interval = interval
        self.dropped = 0
        self._task: asyncio.Task[None] | None = None

    def record(self, entry: dict[str, Any]) -> None:
        if len(self.pending) >= self.capacity:
            self.dropped += 1
            return
        self.pending.append(entry)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="access-log")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        stream = self._stream or sys.stderr.buffer
        lines = []
        pending = self.pending
        while pending:
            lines.append(orjson.dumps(pending.popleft(), default=str))
        lines.append(b"")
        with contextlib.suppress(OSError, ValueError):
            stream.write(b"\n".join(lines))
            stream.flush()

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.flush()
