"""Prometheus metrics of a trainer worker, on an injected registry (never module globals).

Every labelled series that can occur is created at start, so it is exported as 0 before
the first event: rates and alerts work from the first scrape. No user or item ids appear
in labels. Counting happens once per batch, not per event (a ``.labels()`` lookup costs
about 2 us; the children are bound here once).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from stream_rec.events import REJECTION_REASONS
from stream_rec.model import KIND_NAMES

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
"""Seconds; dense below 1 s where the freshness objective (p99 <= 0.5 s) lives."""

REDIS_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
BATCH_SIZE_BUCKETS = (1, 10, 50, 100, 250, 500, 1000, 2000, 5000, 10000)


STAGES = ("poll", "decode", "model", "lists", "flush", "checkpoint", "commit", "observe")
"""The stages of a batch, in order (``stream_rec_stage_seconds_total``)."""


class WorkerMetrics:
    """The trainer's metrics. Create one per worker with its own registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
        p = "stream_rec_"
        self.consumed = Counter(
            p + "events_consumed", "Messages read from the events topic.", registry=registry
        )
        applied = Counter(
            p + "events_applied",
            "Events applied to the model, by type.",
            ["type"],
            registry=registry,
        )
        self.applied = {name: applied.labels(name) for name in KIND_NAMES}
        rejected = Counter(
            p + "events_rejected",
            "Messages sent to the dead-letter topic, by reason.",
            ["reason"],
            registry=registry,
        )
        self.rejected = {reason: rejected.labels(reason) for reason in REJECTION_REASONS}
        self.deduplicated = Counter(
            p + "events_deduplicated",
            "Events skipped because their event id was applied within the window.",
            registry=registry,
        )
        self.replayed = Counter(
            p + "records_replayed",
            "Records skipped because their offset was already applied (redelivered).",
            registry=registry,
        )
        self.fenced = Counter(
            p + "fenced_writes",
            "Commits refused because another worker had claimed a partition of them.",
            registry=registry,
        )
        self.merged_commits = Counter(
            p + "merged_commits",
            "Commits whose shared rows were merged onto other workers' (they had written).",
            registry=registry,
        )
        self.shared_refreshes = Counter(
            p + "shared_refreshes",
            "Times the worker took the stored shared rows (other workers' steps).",
            registry=registry,
        )
        self.profiles_read = Counter(
            p + "profiles_consumed", "Messages read from the profiles topic.", registry=registry
        )
        self.profiles_applied = Counter(
            p + "profiles_applied",
            "User profiles and item metadata applied to the model.",
            registry=registry,
        )
        self.batches = Counter(p + "batches", "Micro-batches processed.", registry=registry)
        self.batch_duration = Histogram(
            p + "batch_duration_seconds",
            "Wall time to process one micro-batch, decode to commit.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.batch_events = Histogram(
            p + "batch_events",
            "Records per micro-batch.",
            buckets=BATCH_SIZE_BUCKETS,
            registry=registry,
        )
        self.redis_duration = Histogram(
            p + "redis_commit_duration_seconds",
            "Round trip of one atomic state write to Redis.",
            buckets=REDIS_BUCKETS,
            registry=registry,
        )
        self.store_errors = Counter(
            p + "store_errors", "Failed calls to the state store (retried).", registry=registry
        )
        self.published = Counter(
            p + "recommendations_published", "Recommendation lists published.", registry=registry
        )
        self.freshness = Histogram(
            p + "freshness_seconds",
            "From an event's Kafka record timestamp to the publish of the list it changed.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.newest_event_ts = Gauge(
            p + "newest_event_timestamp_seconds",
            "Event time (the ts field) of the newest applied event.",
            registry=registry,
        )
        self._newest_event_ts = 0.0
        self._newest_record_ts = 0.0
        newest_age = Gauge(
            p + "newest_event_age_seconds",
            "Seconds since the Kafka record timestamp of the newest applied event.",
            registry=registry,
        )
        newest_age.set_function(self._newest_age)
        self.training_loss = Gauge(
            p + "training_loss",
            "Mean loss of the last batch, by objective.",
            ["objective"],
            registry=registry,
        )
        self.loss = {name: self.training_loss.labels(name) for name in ("squared_error", "ranking")}
        self.users = Gauge(p + "model_users", "Users the model holds.", registry=registry)
        self.items = Gauge(p + "model_items", "Items the model holds.", registry=registry)
        features = Gauge(
            p + "model_features",
            "Feature tokens the model has embedded, by kind.",
            ["kind"],
            registry=registry,
        )
        self.features = {kind: features.labels(kind) for kind in ("user", "item")}
        stages = Counter(
            p + "stage_seconds",
            "Seconds spent by the worker, by stage of its batches (poll: waiting for records).",
            ["stage"],
            registry=registry,
        )
        self.stage_seconds = {s: stages.labels(s) for s in STAGES}
        self.context_values = Gauge(
            p + "model_context_values",
            "Distinct context values (device=tv, hour=18-23 ...) with an embedding.",
            registry=registry,
        )
        self.context_values_dropped = Counter(
            p + "context_values_dropped",
            "Context values ignored because the vocabulary was full (model.max_context_values).",
            registry=registry,
        )
        self.hit_ratio = Gauge(
            p + "online_hit_ratio",
            "Share of recent positives whose item was in the list last published to the user "
            "(hit@k, an online CTR proxy).",
            registry=registry,
        )
        self.positives_scored = Counter(
            p + "online_positives",
            "Positives on items new to their user, scored against the list last published "
            "to the user (hits / positives over any window: hit@k).",
            registry=registry,
        )
        self.hits = Counter(
            p + "online_hits",
            "Scored positives whose item was in the user's last list.",
            registry=registry,
        )
        self.ndcg = Gauge(
            p + "online_ndcg",
            "Mean NDCG@k of recent positives against the user's last list.",
            registry=registry,
        )
        self.rmse = Gauge(
            p + "online_rating_rmse",
            "RMSE of recent ratings, predicted before each step.",
            registry=registry,
        )
        self.coverage = Gauge(
            p + "list_coverage_ratio",
            "Distinct items in the recently published lists / items known.",
            registry=registry,
        )
        self.diversity = Gauge(
            p + "list_diversity",
            "1 - mean pairwise similarity of the items of recent lists.",
            registry=registry,
        )
        self.drifts = Counter(
            p + "drifts_detected",
            "Changes in the online hit rate detected by ADWIN.",
            registry=registry,
        )
        self._lag = Gauge(
            p + "consumer_lag",
            "End offset minus the worker's position, per partition.",
            ["topic", "partition"],
            registry=registry,
        )
        self.snapshots = Counter(
            p + "metrics_snapshots_published",
            "Metric snapshots written to the metrics topic.",
            registry=registry,
        )

    def set_lag(self, topic: str, partition: int, lag: int) -> None:
        self._lag.labels(topic, str(partition)).set(lag)

    def forget_lag(self, topic: str, partition: int) -> None:
        """A partition that left this worker: its series goes, so no stale lag remains."""
        with contextlib.suppress(KeyError):
            self._lag.remove(topic, str(partition))

    def count_batch(
        self,
        consumed: int,
        applied_by_type: Mapping[str, int],
        rejected_by_reason: Mapping[str, int],
    ) -> None:
        """Add one batch's counts."""
        self.consumed.inc(consumed)
        for name, n in applied_by_type.items():
            if n:
                self.applied[name].inc(n)
        for reason, n in rejected_by_reason.items():
            if n:
                self.rejected[reason].inc(n)
        self.batches.inc()

    def count_profiles(self, read: int, applied: int, rejected: Mapping[str, int]) -> None:
        """Add one batch's profile messages (rejections count with the events')."""
        self.profiles_read.inc(read)
        self.profiles_applied.inc(applied)
        for reason, n in rejected.items():
            if n:
                self.rejected[reason].inc(n)

    def observe_freshness(self, record_timestamps_s: Iterable[float], published_at: float) -> None:
        """One observation per published list, from its newest event's record timestamp."""
        for ts in record_timestamps_s:
            self.freshness.observe(max(0.0, published_at - ts))

    def mark_newest(self, event_ts: float, record_ts: float) -> None:
        """Note a batch's newest event time and newest record timestamp (unix seconds)."""
        if event_ts > self._newest_event_ts:
            self._newest_event_ts = event_ts
            self.newest_event_ts.set(event_ts)
        self._newest_record_ts = max(self._newest_record_ts, record_ts)

    def _newest_age(self) -> float:
        if self._newest_record_ts <= 0:
            return 0.0
        return max(0.0, time.time() - self._newest_record_ts)
