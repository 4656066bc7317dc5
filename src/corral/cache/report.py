"""What the cache reports, for ``/metrics`` and the admin API.

Example::

    counters = CacheCounters()
    counters.hits += 1
    CacheReport(counters, store=None).counters.hits     # 1
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from corral.cache.store import CacheStats


@dataclass(slots=True)
class CacheCounters:
    """Requests by what the cache did for them. ``coalesced`` hits came from an identical
    request in flight; ``errors`` are store failures (the request went on as a miss)."""

    hits: int = 0
    misses: int = 0
    bypasses: int = 0
    coalesced: int = 0
    errors: int = 0


class CacheReport(NamedTuple):
    counters: CacheCounters
    # None until a remote store's size has been measured once.
    store: CacheStats | None
