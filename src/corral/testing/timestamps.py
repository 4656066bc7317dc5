"""Wall-clock timestamps in Ollama's format, cheap enough to stamp every streamed line.

Ollama writes ``created_at`` as RFC 3339 with nanoseconds. Formatting a datetime costs a few
microseconds, so :class:`WallClock` formats the seconds once per second and appends the fraction.

Example::

    clock = WallClock()
    clock.rfc3339()            # "2025-05-10T15:06:48.639712648Z"
    rfc3339_at(0.0)           # "1970-01-01T00:00:00.000000000Z"
"""

from __future__ import annotations

import time
from collections.abc import Callable

NS_PER_SECOND = 1_000_000_000


def to_ns(seconds: float) -> int:
    """A duration in Ollama's unit (nanoseconds)."""
    return round(seconds * NS_PER_SECOND)


def rfc3339_at(unix_seconds: float) -> str:
    ns = round(unix_seconds * NS_PER_SECOND)
    sec, frac = divmod(ns, NS_PER_SECOND)
    return f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(sec))}.{frac:09d}Z"


class WallClock:
    """RFC 3339 "now", with the formatted seconds cached between calls."""

    __slots__ = ("_now_ns", "_prefix", "_second")

    def __init__(self, now_ns: Callable[[], int] = time.time_ns) -> None:
        self._now_ns = now_ns
        self._second = -1
        self._prefix = ""

    def rfc3339(self) -> str:
        sec, frac = divmod(self._now_ns(), NS_PER_SECOND)
        if sec != self._second:
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
            self._second = sec
        return f"{self._prefix}.{frac:09d}Z"

    def unix(self) -> int:
        return self._now_ns() // NS_PER_SECOND
