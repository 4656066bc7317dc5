"""Prometheus metrics, every one defined once, here.

Recording sits on the hot path, so it is plain dictionary arithmetic (a counter is a dict from a
label tuple to a number, a histogram a list of bucket counts); ``prometheus_client`` turns those
into the exposition format when ``/metrics`` is scraped (:mod:`corral.observability.exposition`,
imported at the first scrape). Gauges that describe the fleet (in flight, queued, state, loaded
models) are read live at scrape time.

Label values stay bounded: ``endpoint`` is the route template, never the raw path; the per-IP
series (``<ns>_requests_by_ip_total``) is off unless ``metrics_by_ip`` is set, because client
addresses are unbounded.

Example::

    metrics = Metrics(namespace="gateway", fleet=lambda: backends, router=router)
    metrics.request("POST", "/api/chat", 200, 0.25, "10.0.0.7")
    body = metrics.render()
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from corral.backends.backend import Backend
    from corral.cache.report import CacheReport
    from corral.observability.exposition import Exposition
    from corral.routing.queue import Router

Labels = tuple[str, ...]
# One key's use of one of its limits: key label (id, or name for a settings key), limit label
# (as in corral_rate_limited_total), units counted now, the configured limit.
LimitUse = tuple[str, str, float, int]

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
RATE_BUCKETS = (1.0, 5.0, 10.0, 20.0, 40.0, 60.0, 100.0, 200.0, 500.0, 1000.0)


class Histogram:
    """Bucket counts per label tuple; ``observe`` is a bisect and two additions."""

    __slots__ = ("buckets", "series")

    def __init__(self, buckets: Sequence[float]) -> None:
        self.buckets = tuple(buckets)
        self.series: dict[Labels, tuple[list[int], list[float]]] = {}

    def observe(self, labels: Labels, value: float) -> None:
        entry = self.series.get(labels)
        if entry is None:
            entry = self.series[labels] = ([0] * (len(self.buckets) + 1), [0.0])
        entry[0][bisect_left(self.buckets, value)] += 1
        entry[1][0] += value

    def merged(self) -> Histogram:
        """Every series added into one (unlabelled), as a histogram of its own."""
        total = Histogram(self.buckets)
        if self.series:
            counts = [sum(c) for c in zip(*(e[0] for e in self.series.values()), strict=True)]
            total.series[()] = (counts, [sum(e[1][0] for e in self.series.values())])
        return total


class Metrics:
    """What corral counts. One instance per app; ``render`` answers ``/metrics``."""

    def __init__(
        self,
        namespace: str = "gateway",
        *,
        by_ip: bool = False,
        fleet: Callable[[], Sequence[Backend]] = list,
        router: Router | None = None,
        api_keys: Callable[[], int] = lambda: 0,
        cache: Callable[[], CacheReport | None] = lambda: None,
    ) -> None:
        self.ns = namespace
        # The response cache counts for itself (plain integers); read at scrape time.
        self.cache_report = cache
        self.by_ip = by_ip
        self.fleet = fleet
        self.router = router
        self.api_keys = api_keys
        # Seed 001's series (under its namespace). Its success and failure counters, and seed
        # 003's request count and latency, are sums of these two: worked out at scrape time,
        # not recorded again for every request.
        self.requests: dict[tuple[str, str, int], float] = {}  # method, endpoint, status
        self.duration = Histogram(LATENCY_BUCKETS)  # method, endpoint
        self.by_ip_requests: dict[Labels, float] = {}  # ip, endpoint, status
        # corral's own
        self.ttft = Histogram(TTFT_BUCKETS)  # model, backend
        self.token_rate = Histogram(RATE_BUCKETS)  # model, backend
        self.prompt_tokens: dict[Labels, float] = {}  # model, key
        self.generated_tokens: dict[Labels, float] = {}  # model, key
        self.queue_wait = Histogram(LATENCY_BUCKETS)  # (none)
        self.failovers: dict[Labels, float] = {}  # backend
        self.cancellations: dict[Labels, float] = {}  # stage
        self.rate_limited: dict[Labels, float] = {}  # limit
        self.limiter_errors = 0.0
        self.recording_counters: Callable[[], dict[str, float]] | None = None
        self.key_limits: Callable[[], Iterable[LimitUse]] = tuple
        self._exposition: Exposition | None = None

    # ---- recording (hot path) ---------------------------------------------------------------

    def request(self, method: str, endpoint: str, status: int, seconds: float, ip: str) -> None:
        key = (method, endpoint, status)
        requests = self.requests
        requests[key] = requests.get(key, 0.0) + 1
        self.duration.observe((method, endpoint), seconds)
        if self.by_ip:
            ip_key = (ip, endpoint, str(status))
            self.by_ip_requests[ip_key] = self.by_ip_requests.get(ip_key, 0.0) + 1

    def generation(
        self,
        model: str,
        backend: str,
        key: str,
        ttft: float | None,
        prompt_tokens: int | None,
        generated_tokens: int | None,
        tokens_per_second: float | None,
    ) -> None:
        labels = (model, backend)
        if ttft is not None:
            self.ttft.observe(labels, ttft)
        if tokens_per_second is not None:
            self.token_rate.observe(labels, tokens_per_second)
        usage = (model, key)
        if prompt_tokens:
            self.prompt_tokens[usage] = self.prompt_tokens.get(usage, 0.0) + prompt_tokens
        if generated_tokens:
            self.generated_tokens[usage] = self.generated_tokens.get(usage, 0.0) + generated_tokens

    def queued(self, seconds: float) -> None:
        self.queue_wait.observe((), seconds)

    def failover(self, backend: str) -> None:
        self.failovers[(backend,)] = self.failovers.get((backend,), 0.0) + 1

    def cancelled(self, stage: str) -> None:
        self.cancellations[(stage,)] = self.cancellations.get((stage,), 0.0) + 1

    def limited(self, limit: str) -> None:
        self.rate_limited[(limit,)] = self.rate_limited.get((limit,), 0.0) + 1

    def limiter_error(self) -> None:
        self.limiter_errors += 1

    # ---- exposition -----------------------------------------------------------------------

    def render(self) -> bytes:
        """What ``/metrics`` answers, in the format :attr:`content_type` names."""
        return self.exposition.render()

    @property
    def content_type(self) -> bytes:
        return self.exposition.content_type

    @property
    def exposition(self) -> Exposition:
        if self._exposition is None:
            # Imported at the first scrape: prometheus_client, and the HTTP server and e-mail
            # modules it brings along, cost over a megabyte a process nobody scrapes never uses.
            from corral.observability.exposition import Exposition

            self._exposition = Exposition(self)
        return self._exposition

    def count_recording(self, counters: Callable[[], dict[str, float]]) -> None:
        """Where the webhook and usage counters are read at scrape time (they live on the
        writer and the deliverer, which are built after the metrics)."""
        self.recording_counters = counters

    def count_key_limits(self, use: Callable[[], Iterable[LimitUse]]) -> None:
        """Where each key's use of its own limits is read at scrape time (the limits stage,
        which is built after the metrics). Bounded by the number of keys."""
        self.key_limits = use
