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
    """CPU seconds of each watched process."""
    cores: dict[str, float]
    """Seconds each core spent running processes, whichever they were."""


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
        # Processes' time only: interrupt and softirq time (the loopback network itself, which
        # the benchmark's own traffic causes) belongs to no process.
        cores = {
            f"core{index}": core.user + core.nice + core.system
            for index, core in enumerate(psutil.cpu_times(percpu=True))
        }
        return CpuSnapshot(time.perf_counter(), seconds, cores)

    def rss_mb(self, name: str) -> float | None:
        process = self.processes.get(name)
        return None if process is None else process.memory_info().rss / MiB

    @staticmethod
    def percent(start: CpuSnapshot, end: CpuSnapshot) -> dict[str, float]:
        """CPU use over the window, in % of one core: per process, and per core (``core0``...)."""
        wall = end.at - start.at
        if wall <= 0:
            return {}
        used = {name: end.seconds[name] - start.seconds[name] for name in start.seconds}
        used.update({name: end.cores[name] - start.cores[name] for name in start.cores})
        return {name: round(100 * seconds / wall, 2) for name, seconds in used.items()}
