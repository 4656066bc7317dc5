"""How long Python's cyclic garbage collector stopped a process, by generation.

A generation-2 pass walks every tracked object; with hundreds of live streams it can stop an
event loop for tens of milliseconds, which is where a p99 latency spike often comes from. The
recorder is a ``gc.callbacks`` entry: two clock reads per collection, nothing on the request path.

Example::

    pauses = GcPauses()
    pauses.install()
    ...
    pauses.summary()   # {"collections": [...], "longest_ms": [...], "total_ms": [...]}
"""

from __future__ import annotations

import gc
import time
from typing import Any


class GcPauses:
    def __init__(self) -> None:
        self.collections = [0, 0, 0]
        self.longest = [0.0, 0.0, 0.0]
        self.total = [0.0, 0.0, 0.0]
        self._started = 0.0

    def install(self) -> None:
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        generation = int(info["generation"])
        took = time.perf_counter() - self._started
        self.collections[generation] += 1
        self.total[generation] += took
        self.longest[generation] = max(self.longest[generation], took)

    def summary(self) -> dict[str, list[float] | list[int]]:
        return {
            "collections": list(self.collections),
            "longest_ms": [round(s * 1000, 3) for s in self.longest],
            "total_ms": [round(s * 1000, 3) for s in self.total],
        }
