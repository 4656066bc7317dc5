"""The Prometheus exposition of :class:`~corral.observability.metrics.Metrics`: the text
``/metrics`` answers, built by ``prometheus_client`` from the recorded figures at scrape time.

A module of its own, imported at the first scrape (see ``Metrics.exposition``): the client
library, with the HTTP server and e-mail modules it imports, costs over a megabyte of memory that
a process nobody scrapes never uses.

Example::

    text = Exposition(metrics).render()
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from corral.observability.metrics import Histogram, Labels, Metrics

if TYPE_CHECKING:
    from corral.backends.backend import Backend
    from corral.cache.report import CacheReport


class Exposition(Collector):
    """Reads ``metrics`` each time it is rendered; owns the registry it renders through."""

    content_type = CONTENT_TYPE_LATEST.encode()

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def collect(self) -> Iterator[Metric]:
        metrics = self.metrics
        ns = metrics.ns
        method_endpoint = ("method", "endpoint")
        requests = metrics.requests
        by_status: dict[Labels, float] = {(m, e, str(c)): n for (m, e, c), n in requests.items()}
        success: dict[Labels, float] = {}
        failure: dict[Labels, float] = {}
        for (method, endpoint, code), count in requests.items():
            outcome = success if code < 400 else failure
            outcome[(method, endpoint)] = outcome.get((method, endpoint), 0.0) + count
        yield _counter(f"{ns}_requests", "HTTP requests", (*method_endpoint, "status"), by_status)
        yield _histogram(
            metrics.duration, f"{ns}_requests_duration_seconds", "Latency", method_endpoint
        )
        if metrics.by_ip:
            yield _counter(
                f"{ns}_requests_by_ip", "Requests by client", ("ip", "endpoint", "status"),
                metrics.by_ip_requests,
            )  # fmt: skip
        yield _counter(f"{ns}_requests_success", "Successes", method_endpoint, success)
        yield _counter(f"{ns}_requests_failure", "Failures", method_endpoint, failure)
        backends = list(metrics.fleet())
        yield _gauge(f"{ns}_apikeys_total", "Active API keys", float(metrics.api_keys()))
        yield _gauge(f"{ns}_ollama_servers_total", "Configured Ollama servers", len(backends))

        total = CounterMetricFamily("ollama_requests", "Total number of requests")
        total.add_metric([], float(sum(requests.values())))
        yield total
        yield _histogram(
            metrics.duration.merged(),
            "ollama_request_latency_seconds",
            "Request latency in seconds",
            (),
        )

        model_backend = ("model", "backend")
        yield _histogram(
            metrics.ttft,
            "corral_time_to_first_token_seconds",
            "Time to the first byte",
            model_backend,
        )
        yield _histogram(
            metrics.token_rate,
            "corral_tokens_per_second",
            "Generation speed reported by Ollama",
            model_backend,
        )
        model_key = ("model", "key")
        yield _counter("corral_prompt_tokens", "Prompt tokens", model_key, metrics.prompt_tokens)
        yield _counter(
            "corral_generated_tokens", "Generated tokens", model_key, metrics.generated_tokens
        )
        yield _histogram(
            metrics.queue_wait, "corral_queue_wait_seconds", "Waits for a backend slot", ()
        )
        yield _counter(
            "corral_failovers", "Requests moved to another backend", ("backend",), metrics.failovers
        )
        yield _counter(
            "corral_cancellations", "Requests whose client left", ("stage",), metrics.cancellations
        )
        yield _counter(
            "corral_rate_limited", "Requests denied by a limit", ("limit",), metrics.rate_limited
        )
        yield _total(
            "corral_limiter_errors",
            "Limit checks the shared limiter (Redis) could not answer",
            metrics.limiter_errors,
        )
        yield from self._fleet_gauges(backends)
        yield from self._recording()
        yield from self._key_limit_gauges()

    def _key_limit_gauges(self) -> Iterator[Metric]:
        labels = ["key", "limit"]
        used = GaugeMetricFamily(
            "corral_key_limit_used",
            "Units a key holds of its limit now: requests in the window, tokens, in flight",
            labels=labels,
        )
        limit = GaugeMetricFamily("corral_key_limit", "A key's limit", labels=labels)
        for key, name, count, most in self.metrics.key_limits():
            used.add_metric([key, name], float(count))
            limit.add_metric([key, name], float(most))
        yield from (used, limit)

    def _recording(self) -> Iterator[Metric]:
        read = self.metrics.recording_counters
        counters = read() if read is not None else {}
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
        cache = self.metrics.cache_report()
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
        router = self.metrics.router
        for b in backends:
            in_flight.add_metric([b.name], float(b.in_flight))
            queued.add_metric([b.name], float(router.queued_for(b) if router is not None else 0))
            up.add_metric([b.name], 1.0 if b.usable else 0.0)
            for model in b.loaded:
                loaded.add_metric([b.name, model], 1.0)
        yield from (in_flight, queued, up, loaded)


def _histogram(
    histogram: Histogram, name: str, doc: str, label_names: Sequence[str]
) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, doc, labels=label_names)
    for labels, (counts, total) in histogram.series.items():
        cumulative, running = [], 0
        for bound, count in zip((*histogram.buckets, float("inf")), counts, strict=True):
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
