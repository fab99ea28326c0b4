"""A running worker's metrics: what the dashboard and the alerts use exists, and the
figures move as they should on a stream with planted tastes."""

from __future__ import annotations

import re
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest

from stream_rec.evaluation.synthetic import SyntheticWorld
from stream_rec.services import free_port
from stream_rec.stream.snapshot import histogram_quantile
from tests.integration.support import (
    open_store,
    produce_events,
    read_topic,
    running_worker,
    settings_for,
    wait_for,
)

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return str(response.read().decode())


def _value(text: str, name: str) -> float:
    match = re.search(rf"^{name} ([0-9.e+-]+)$", text, re.MULTILINE)
    assert match, f"{name} is not exported"
    return float(match.group(1))


def _used_names() -> set[str]:
    """Every stream_rec_* name in the dashboard and the alert rules."""
    texts = [
        (ROOT / "ops" / "alerts.yml").read_text(),
        (ROOT / "ops" / "grafana" / "dashboards" / "stream-rec.json").read_text(),
    ]
    return {name for text in texts for name in re.findall(r"stream_rec_[a-z_]+", text)}


def test_metrics_used_by_the_dashboard_and_alerts_exist_and_move(
    kafka_server: Any, redis_server: Any, unique: str
) -> None:
    port = free_port()
    settings = settings_for(
        kafka_server.bootstrap, redis_server.url, unique, kafka_server.flavor, metrics_port=port
    )
    settings = settings.model_copy(
        update={
            "metrics": settings.metrics.model_copy(
                update={"snapshot_seconds": 1.0, "lag_interval_seconds": 0.5}
            )
        }
    )
    # Mild popularity: the hit rate must come from learning the tastes, not from the head.
    world = SyntheticWorld.create(n_users=500, n_items=400, seed=12, popularity_exponent=0.3)
    events = list(world.events(30_000))
    with running_worker(settings), open_store(settings) as store:
        produce_events(settings, events[:6_000])
        wait_for(lambda: store.stats().applied_events == 6_000, 60, "the first part applied")
        early = _scrape(port)
        produce_events(settings, events[6_000:])
        wait_for(lambda: store.stats().applied_events == len(events), 120, "the rest applied")
        wait_for(lambda: "stream_rec_consumer_lag{" in _scrape(port), 10, "the lag read")
        late = _scrape(port)

    exported = {
        line.split("{")[0].split(" ")[0]
        for line in late.splitlines()
        if line.startswith("stream_rec_")
    }
    for name in _used_names():
        assert any(e == name or e.startswith(name + "_") for e in exported), f"{name} not exported"

    # The model learns the planted tastes: the online hit rate rises.
    hit_early, hit_late = (
        _value(early, "stream_rec_online_hit_ratio"),
        _value(late, "stream_rec_online_hit_ratio"),
    )
    print(f"online hit rate@10: {hit_early:.3f} after 6k events, {hit_late:.3f} after 30k")
    assert hit_late > hit_early
    # The counters behind the dashboard's hit rate: hits among the scored positives.
    scored = _value(late, "stream_rec_online_positives_total")
    assert scored > _value(early, "stream_rec_online_positives_total")
    assert 0 < _value(late, "stream_rec_online_hits_total") < scored
    assert 0 < _value(late, "stream_rec_list_coverage_ratio") <= 1
    assert 0 < _value(late, "stream_rec_list_diversity") <= 1
    assert _value(late, "stream_rec_online_rating_rmse") > 0
    # Freshness is observed once per published list, and is well under a second here.
    buckets = [
        (float("inf") if le == "+Inf" else float(le), float(v))
        for le, v in re.findall(
            r'^stream_rec_freshness_seconds_bucket\{le="([^"]+)"\} ([0-9.e+]+)$', late, re.MULTILINE
        )
    ]
    assert _value(late, "stream_rec_freshness_seconds_count") == _value(
        late, "stream_rec_recommendations_published_total"
    )
    p50 = histogram_quantile(0.5, buckets)
    assert p50 is not None and p50 < 5.0
    # The same figures went to the metrics topic as JSON snapshots.
    snapshots = [orjson.loads(r.value) for r in read_topic(settings, settings.topics.metrics)]
    assert snapshots, "no snapshot on the metrics topic"
    assert {"worker", "generated_at", "freshness_p50_s", "freshness_p99_s", "metrics"} <= set(
        snapshots[-1]
    )
    assert "stream_rec_events_consumed_total" in snapshots[-1]["metrics"]
