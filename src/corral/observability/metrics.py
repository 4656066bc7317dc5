"""Prometheus metrics, every one defined once, here.

Recording sits on the hot path, so it is plain dictionary arithmetic (a counter is a dict from a
label tuple to a number, a histogram a list of bucket counts); ``prometheus_client`` turns those
into the exposition format when ``/metrics`` is scraped, through a custom collector. Gauges that
describe the fleet (in flight, queued, state, loaded models) are read live at scrape time.

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
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from corral.backends.backend import Backend
    from corral.cache.report import CacheReport
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

    def family(self, name: str, doc: str, label_names: Sequence[str]) -> HistogramMetricFamily:
        family = HistogramMetricFamily(name, doc, labels=label_names)
        for labels, (counts, total) in self.series.items():
            cumulative, running = [], 0
            for bound, count in zip((*self.buckets, float("inf")), counts, strict=True):
                running += count
                cumulative.append((_bound(bound), float(running)))
            family.add_metric(list(labels), cumulative, total[0])
        return family


def _bound(value: float) -> str:
    return "+Inf" if value == float("inf") else repr(value)


def _counter(
    name: str, doc: str, label_names: Sequence[str], series: dict[Labels, float]
) -> Metric:
    family = CounterMetricFamily(name, doc, labels=label_names)
    for labels, value in series.items():
        family.add_metric(list(labels), value)
    return family


def _total(name: str, doc: str, value: float) -> Metric:
    family = CounterMetricFamily(name, doc)
    family.add_metric([], float(value))
    return family


def _gauge(name: str, doc: str, value: float) -> Metric:
    family = GaugeMetricFamily(name, doc)
    family.add_metric([], float(value))
    return family


class Metrics(Collector):
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
        # The response cache counts for itself (plain integers); read here at scrape time.
        self._cache = cache
        self.by_ip = by_ip
        self._fleet = fleet
        self._router = router
        self._api_keys = api_keys
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
        self._recording_counters: Callable[[], dict[str, float]] | None = None
        self._key_limits: Callable[[], Iterable[LimitUse]] = tuple
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

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
        return generate_latest(self.registry)

    def collect(self) -> Iterator[Metric]:
        ns = self.ns
        method_endpoint = ("method", "endpoint")
        requests = self.requests
        by_status: dict[Labels, float] = {(m, e, str(c)): n for (m, e, c), n in requests.items()}
        success: dict[Labels, float] = {}
        failure: dict[Labels, float] = {}
        for (method, endpoint, code), count in requests.items():
            outcome = success if code < 400 else failure
            outcome[(method, endpoint)] = outcome.get((method, endpoint), 0.0) + count
        yield _counter(f"{ns}_requests", "HTTP requests", (*method_endpoint, "status"), by_status)
        yield self.duration.family(f"{ns}_requests_duration_seconds", "Latency", method_endpoint)
        if self.by_ip:
            yield _counter(
                f"{ns}_requests_by_ip", "Requests by client", ("ip", "endpoint", "status"),
                self.by_ip_requests,
            )  # fmt: skip
        yield _counter(f"{ns}_requests_success", "Successes", method_endpoint, success)
        yield _counter(f"{ns}_requests_failure", "Failures", method_endpoint, failure)
        backends = list(self._fleet())
        yield _gauge(f"{ns}_apikeys_total", "Active API keys", float(self._api_keys()))
        yield _gauge(f"{ns}_ollama_servers_total", "Configured Ollama servers", len(backends))

        total = CounterMetricFamily("ollama_requests", "Total number of requests")
        total.add_metric([], float(sum(requests.values())))
        yield total
        yield self.duration.merged().family(
            "ollama_request_latency_seconds", "Request latency in seconds", ()
        )

        model_backend = ("model", "backend")
        yield self.ttft.family(
            "corral_time_to_first_token_seconds", "Time to the first byte", model_backend
        )
        yield self.token_rate.family(
            "corral_tokens_per_second", "Generation speed reported by Ollama", model_backend
        )
        model_key = ("model", "key")
        yield _counter("corral_prompt_tokens", "Prompt tokens", model_key, self.prompt_tokens)
        yield _counter(
            "corral_generated_tokens", "Generated tokens", model_key, self.generated_tokens
        )
        yield self.queue_wait.family("corral_queue_wait_seconds", "Waits for a backend slot", ())
        yield _counter(
            "corral_failovers", "Requests moved to another backend", ("backend",), self.failovers
        )
        yield _counter(
            "corral_cancellations", "Requests whose client left", ("stage",), self.cancellations
        )
        yield _counter(
            "corral_rate_limited", "Requests denied by a limit", ("limit",), self.rate_limited
        )
        yield _total(
            "corral_limiter_errors",
            "Limit checks the shared limiter (Redis) could not answer",
            self.limiter_errors,
        )
        yield from self._fleet_gauges(backends)
        yield from self._recording()
        yield from self._key_limit_gauges()

    def count_recording(self, counters: Callable[[], dict[str, float]]) -> None:
        """Where the webhook and usage counters are read at scrape time (they live on the
        writer and the deliverer, which are built after the metrics)."""
        self._recording_counters = counters

    def count_key_limits(self, use: Callable[[], Iterable[LimitUse]]) -> None:
        """Where each key's use of its own limits is read at scrape time (the limits stage,
        which is built after the metrics). Bounded by the number of keys."""
        self._key_limits = use

    def _key_limit_gauges(self) -> Iterator[Metric]:
        labels = ["key", "limit"]
        used = GaugeMetricFamily(
            "corral_key_limit_used",
            "Units a key holds of its limit now: requests in the window, tokens, in flight",
            labels=labels,
        )
        limit = GaugeMetricFamily("corral_key_limit", "A key's limit", labels=labels)
        for key, name, count, most in self._key_limits():
            used.add_metric([key, name], float(count))
            limit.add_metric([key, name], float(most))
        yield from (used, limit)

    def _recording(self) -> Iterator[Metric]:
        counters = self._recording_counters() if self._recording_counters is not None else {}
        docs = {
            "corral_webhook_deliveries": "Webhook deliveries a receiver accepted",
            "corral_webhook_failures": "Webhook delivery attempts that failed (retried later)",
            "corral_webhook_events_dropped": "Webhook events dropped: their queue was full",
            "corral_usage_records_written": "Usage records written to the database",
            "corral_usage_records_dropped": "Usage records dropped: queue full or database down",
        }
        for name, doc in docs.items():
            family = CounterMetricFamily(name, doc)
            family.add_metric([], float(counters.get(name, 0.0)))
            yield family
        cache = self._cache()
        if cache is not None:
            yield from self._cache_metrics(cache)

    def _cache_metrics(self, report: CacheReport) -> Iterator[Metric]:
        counters, store = report
        # seed 003's names for hits, misses and size; corral's own for the rest
        yield _total("ollama_cache_hits", "Total cache hits", counters.hits)
        yield _total("ollama_cache_misses", "Total cache misses", counters.misses)
        yield _total(
            "corral_cache_bypasses", "Requests the cache did not look up", counters.bypasses
        )
        yield _total(
            "corral_cache_coalesced", "Hits shared by an identical request in flight",
            counters.coalesced,
        )  # fmt: skip
        yield _total("corral_cache_errors", "Cache store failures", counters.errors)
        if store is not None:
            yield _gauge("ollama_cache_size", "Current number of items in cache", store.entries)
            yield _gauge("corral_cache_bytes", "Bytes of cached answers held", store.bytes)
            yield _total("corral_cache_stores", "Answers stored in the cache", store.stores)
            yield _total(
                "corral_cache_evictions", "Answers pushed out to make room", store.evictions
            )

    def _fleet_gauges(self, backends: Sequence[Backend]) -> Iterator[Metric]:
        in_flight = GaugeMetricFamily("corral_in_flight", "Requests in flight", labels=["backend"])
        queued = GaugeMetricFamily(
            "corral_queued", "Requests waiting for a slot", labels=["backend"]
        )
        up = GaugeMetricFamily(
            "corral_backend_up", "1 when the backend takes traffic", labels=["backend"]
        )
        loaded = GaugeMetricFamily(
            "corral_backend_loaded_models", "Models held in memory", labels=["backend", "model"]
        )
        for b in backends:
            in_flight.add_metric([b.name], float(b.in_flight))
            queued.add_metric(
                [b.name], float(self._router.queued_for(b) if self._router is not None else 0)
            )
            up.add_metric([b.name], 1.0 if b.usable else 0.0)
            for model in b.loaded:
                loaded.add_metric([b.name, model], 1.0)
        yield from (in_flight, queued, up, loaded)
