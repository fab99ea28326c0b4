"""Prometheus metrics of the HTTP API, on an injected registry (never module globals).

Same conventions as the worker's (:mod:`stream_rec.metrics`): base units, no user or
item ids in labels, every labelled series created (as 0) at start, children bound once.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from stream_rec.metrics import LATENCY_BUCKETS

ROUTES = (
    "recommendations",
    "events",
    "profiles",
    "users",
    "health",
    "metrics",
    "openapi",
    "page",
    "stream",
    "other",
)
"""Route labels (a bounded set: paths with ids never become labels)."""

BAD_REQUEST_REASONS = (
    "unauthorized",
    "too_large",
    "invalid_event",
    "invalid_profile",
    "bad_parameter",
    "unknown_user",
    "not_found",
    "method_not_allowed",
    "bad_media_type",
    "bad_host",
)
"""Why a request was refused (label values of ``stream_rec_http_bad_requests_total``)."""

HTTP_BUCKETS = (1e-4, 2.5e-4, 5e-4, 1e-3, 2e-3, 5e-3, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
"""Seconds; dense below the GET objective (p99 <= 5 ms), from 0.1 ms."""


class ApiMetrics:
    """The API's metrics. Create one per server with its own registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
        p = "stream_rec_http_"
        requests = Counter(
            p + "requests", "HTTP requests answered, by route.", ["route"], registry=registry
        )
        self.requests = {route: requests.labels(route) for route in ROUTES}
        duration = Histogram(
            p + "request_duration_seconds",
            "Time from a request's arrival to the end of its answer (streams excluded).",
            ["route"],
            buckets=HTTP_BUCKETS,
            registry=registry,
        )
        self.duration = {route: duration.labels(route) for route in ROUTES}
        bad = Counter(
            p + "bad_requests",
            "Requests refused (4xx), by reason.",
            ["reason"],
            registry=registry,
        )
        self.bad = {reason: bad.labels(reason) for reason in BAD_REQUEST_REASONS}
        produced = Counter(
            p + "messages_produced",
            "Events and profiles accepted and acknowledged by Kafka, by topic kind.",
            ["kind"],
            registry=registry,
        )
        self.produced = {kind: produced.labels(kind) for kind in ("events", "profiles")}
        self.produce_errors = Counter(
            p + "produce_errors",
            "POST requests answered 503 because Kafka did not acknowledge their messages.",
            registry=registry,
        )
        reads = Counter(
            p + "list_reads",
            "Lists served, by where they came from (the in-process cache or Redis).",
            ["source"],
            registry=registry,
        )
        self.reads = {source: reads.labels(source) for source in ("cache", "redis")}
        self.delivery = Histogram(
            p + "list_delivery_seconds",
            "From a list's generated_at to its arrival in this server from the topic.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.cached_lists = Gauge(
            p + "cached_lists", "Lists held in this server's memory.", registry=registry
        )
        self.stream_clients = Gauge(
            p + "stream_clients",
            "Open server-sent-event streams (the live page's connections).",
            registry=registry,
        )

    def watch_cache(self, size: Callable[[], int]) -> None:
        """Report the cache size whenever the registry is scraped."""
        self.cached_lists.set_function(lambda: float(size()))
