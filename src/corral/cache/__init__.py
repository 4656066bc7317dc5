"""The response cache: keys, policy, stores, replay and coalescing (DESIGN.md §3 step 5, §7).

The request flow's cache stage is :class:`corral.http.cache_stage.CacheStage`; this package holds
the parts it is made of, none of which knows about HTTP.
"""

from corral.cache.entry import CachedAnswer
from corral.cache.key import cache_key, canonical_request
from corral.cache.memory import MemoryCache
from corral.cache.policy import KINDS, CachePolicy, Directive, Kind, directive
from corral.cache.store import Cache, CacheStats, CacheUnavailable, LocalCache, open_store

__all__ = [
    "KINDS",
    "Cache",
    "CachePolicy",
    "CacheStats",
    "CacheUnavailable",
    "CachedAnswer",
    "Directive",
    "Kind",
    "LocalCache",
    "MemoryCache",
    "cache_key",
    "canonical_request",
    "directive",
    "open_store",
]
