"""The metrics snapshot published to the metrics topic: the same figures as /metrics.

One JSON object: every ``stream_rec_*`` sample from the worker's registry (name ->
value, or name -> {labels -> value}), plus the freshness p50/p99 estimated from its
histogram buckets as Prometheus' ``histogram_quantile`` would.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

from prometheus_client import CollectorRegistry

PREFIX = "stream_rec_"


def snapshot(registry: CollectorRegistry, worker: str) -> dict[str, Any]:
    """The registry's stream-rec figures as one JSON-ready dict."""
    figures: dict[str, Any] = {}
    buckets: list[tuple[float, float]] = []
    for family in registry.collect():
        if not family.name.startswith(PREFIX):
            continue
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue
            if sample.name == PREFIX + "freshness_seconds_bucket":
                buckets.append((float(sample.labels["le"]), sample.value))
                continue
            if sample.name.endswith("_bucket"):
                continue
            labels = dict(sample.labels)
            if labels:
                key = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
                figures.setdefault(sample.name, {})[key] = sample.value
            else:
                figures[sample.name] = sample.value
    return {
        "worker": worker,
        "generated_at": time.time(),
        "freshness_p50_s": histogram_quantile(0.5, buckets),
        "freshness_p99_s": histogram_quantile(0.99, buckets),
        "metrics": figures,
    }


def histogram_quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float | None:
    """The q-quantile from cumulative (upper bound, count) buckets, interpolating linearly
    inside the bucket as Prometheus does; None without observations.

    >>> histogram_quantile(0.5, [(0.1, 10.0), (0.2, 30.0), (float("inf"), 30.0)])
    0.125
    """
    ordered = sorted(buckets)
    if not ordered or ordered[-1][1] <= 0:
        return None
    total = ordered[-1][1]
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in ordered:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            width = count - lower_count
            fraction = (rank - lower_count) / width if width else 0.0
            return lower_bound + (bound - lower_bound) * fraction
        lower_bound, lower_count = bound, count
    return lower_bound
