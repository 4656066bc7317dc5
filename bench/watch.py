"""CPU time and resident memory of the benchmark's processes, read through psutil.

CPU is read as user + system seconds of the whole process (every thread), so time a busy
machine steals from a process is not counted against it. The kernel counts in clock ticks
(10 ms), so a window should last a good fraction of a second.

Example::

    watch = Watch({"corral": corral_pid})
    before = watch.cpu()
    ...  # load
    Watch.percent(before, watch.cpu())["corral"]   # % of one core over the window
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import psutil

MiB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class CpuSnapshot:
    at: float
    seconds: dict[str, float]


class Watch:
    """Named processes (``corral``, ``simulator``), plus this one under ``include_self``."""

    def __init__(self, pids: dict[str, int], include_self: str | None = None) -> None:
        self.processes = {name: psutil.Process(pid) for name, pid in pids.items()}
        if include_self is not None:
            self.processes[include_self] = psutil.Process()

    def cpu(self) -> CpuSnapshot:
        seconds = {}
        for name, process in self.processes.items():
            times = process.cpu_times()
            seconds[name] = times.user + times.system
        return CpuSnapshot(time.perf_counter(), seconds)

    def rss_mb(self, name: str) -> float | None:
        process = self.processes.get(name)
        return None if process is None else process.memory_info().rss / MiB

    @staticmethod
    def percent(start: CpuSnapshot, end: CpuSnapshot) -> dict[str, float]:
        """CPU use over the window, in % of one core."""
        wall = end.at - start.at
        if wall <= 0:
            return {}
        return {
            name: round(100 * (end.seconds[name] - start.seconds[name]) / wall, 2)
            for name in start.seconds
        }
