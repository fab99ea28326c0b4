"""Metrics: on an injected registry, every labelled series exported from the start."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from stream_rec.events import REJECTION_REASONS
from stream_rec.metrics import WorkerMetrics


def test_every_known_series_is_exported_as_zero_at_start() -> None:
    text = generate_latest(WorkerMetrics(CollectorRegistry()).registry).decode()
    for kind in ("impression", "click", "watch", "rating"):
        assert f'stream_rec_events_applied_total{{type="{kind}"}} 0.0' in text
    for reason in REJECTION_REASONS:
        assert f'stream_rec_events_rejected_total{{reason="{reason}"}} 0.0' in text
    for name in (
        "stream_rec_events_consumed_total 0.0",
        "stream_rec_batch_duration_seconds_count 0.0",
        "stream_rec_newest_event_age_seconds 0.0",
        "stream_rec_freshness_seconds_count 0.0",
        "process_cpu_seconds_total",
        "python_gc_objects_collected_total",
    ):
        assert name in text


def test_two_workers_in_one_process_do_not_share_metrics() -> None:
    first = WorkerMetrics(CollectorRegistry())
    second = WorkerMetrics(CollectorRegistry())
    first.count_batch(5, {"click": 5}, {})
    assert (
        'stream_rec_events_applied_total{type="click"} 0.0'
        in generate_latest(second.registry).decode()
    )
    assert (
        'stream_rec_events_applied_total{type="click"} 5.0'
        in generate_latest(first.registry).decode()
    )
