"""The batch processor with in-memory twins: lists, dead letters, offsets, retries."""

from __future__ import annotations

import threading

import numpy as np
import orjson
import pytest
from prometheus_client import CollectorRegistry

from stream_rec.events import RecommendationMessage
from stream_rec.metrics import WorkerMetrics
from stream_rec.model import HybridModel, ModelParams
from stream_rec.store import MemoryStore
from stream_rec.stream.processor import REASON_HEADER, SOURCE_HEADER, BatchProcessor, OutputTopics
from stream_rec.stream.records import DeliveryFailed, MemorySink, Record

TOPICS = OutputTopics("recs", "dead")


def _processor(
    store: MemoryStore, sink: MemorySink, stop: threading.Event | None = None
) -> BatchProcessor:
    return BatchProcessor(
        HybridModel(ModelParams(factors=4, top_k=3, negatives=4)),
        store,
        sink,
        TOPICS,
        WorkerMetrics(CollectorRegistry()),
        max_event_bytes=4096,
        model_name="test",
        stop=stop or threading.Event(),
        retry_initial=0.001,
        retry_max=0.002,
        clock=lambda: 1000.0,
    )


def _event(
    n: int,
    user: str,
    item: str,
    kind: str = "click",
    partition: int = 0,
    offset: int | None = None,
    ts: float | None = None,
) -> Record:
    payload = {
        "event_id": f"e{n}",
        "type": kind,
        "user_id": user,
        "item_id": item,
        "ts": float(ts if ts is not None else 100 + n),
    }
    if kind == "rating":
        payload["rating"] = 5.0
    return Record(
        "events",
        user.encode(),
        orjson.dumps(payload),
        partition=partition,
        offset=n if offset is None else offset,
        timestamp=999_000,
    )


def test_a_batch_publishes_one_list_per_touched_user_and_commits_once() -> None:
    store, sink = MemoryStore(), MemorySink()
    proc = _processor(store, sink)
    batch = [_event(0, "u1", "a"), _event(1, "u2", "b"), _event(2, "u1", "c"), _event(3, "u3", "d")]
    result = proc.process(batch)
    assert result.applied == 4
    assert result.published == 3
    assert result.rejected == 0
    lists = {
        r.key.decode(): RecommendationMessage.model_validate_json(r.value) for r in sink.on("recs")
    }
    assert set(lists) == {"u1", "u2", "u3"}
    assert {e.item_id for e in lists["u1"].items}.isdisjoint({"a", "c"})
    assert lists["u1"].version == 1
    assert lists["u1"].event_ts == 102.0
    assert lists["u1"].model == "test"
    assert store.commits == 1
    assert store.offsets() == {"events:0": 4}
    assert store.recommendation("u1") == next(r.value for r in sink.on("recs") if r.key == b"u1")
    assert result.next_offsets == {("events", 0): 4}


def test_versions_increase_across_batches_and_restarts() -> None:
    store, sink = MemoryStore(), MemorySink()
    proc = _processor(store, sink)
    proc.process([_event(0, "u1", "a")])
    proc.process([_event(1, "u1", "b")])
    restarted = _processor(store, MemorySink())
    assert restarted.restore() == {"events:0": 2}
    restarted.process([_event(2, "u1", "c")])
    versions = [orjson.loads(r.value)["version"] for r in sink.on("recs")]
    assert versions == [1, 2]
    assert orjson.loads(store.recommendation("u1") or b"{}")["version"] == 3
    # The restored model still excludes what u1 consumed before the restart.
    assert {
        e["item_id"] for e in orjson.loads(store.recommendation("u1") or b"{}")["items"]
    }.isdisjoint({"a", "b", "c"})


def test_rejected_messages_go_to_dead_letters_and_the_rest_applies() -> None:
    store, sink = MemoryStore(), MemorySink()
    proc = _processor(store, sink)
    bad = Record("events", b"k", b"{oops", partition=1, offset=7, timestamp=0)
    result = proc.process([_event(0, "u1", "a"), bad, _event(1, "u1", "b", partition=1, offset=8)])
    assert result.applied == 2
    assert result.rejected == 1
    (dead,) = sink.on("dead")
    assert dead.value == b"{oops"
    assert dead.key == b"k"
    headers = dict(dead.headers)
    assert headers[REASON_HEADER] == b"bad_json"
    assert headers[SOURCE_HEADER] == b"events:1:7"
    assert store.offsets() == {"events:0": 1, "events:1": 9}


def test_a_batch_of_only_bad_messages_still_moves_the_offsets() -> None:
    store, sink = MemoryStore(), MemorySink()
    _processor(store, sink).process([Record("events", None, None, offset=3)])
    assert store.offsets() == {"events:0": 4}
    assert [dict(r.headers)[REASON_HEADER] for r in sink.on("dead")] == [b"empty"]


def test_partitions_are_merged_by_event_time_keeping_each_partition_in_order() -> None:
    store, sink = MemoryStore(), MemorySink()
    proc = _processor(store, sink)
    # Partition 0 holds a late event ts=300; partition 1 holds ts=200. u1 lives on p0, u2 on p1.
    proc.process(
        [_event(0, "u1", "a", ts=300.0), _event(1, "u2", "b", partition=1, offset=0, ts=200.0)]
    )
    assert [r.key for r in sink.on("recs")] == [b"u2", b"u1"]


def test_an_unavailable_store_is_retried_until_it_answers() -> None:
    store, sink = MemoryStore(), MemorySink()
    proc = _processor(store, sink)
    store.available = False
    timer = threading.Timer(0.05, lambda: setattr(store, "available", True))
    timer.start()
    proc.process([_event(0, "u1", "a")])
    timer.join()
    assert store.commits == 1
    assert store.offsets() == {"events:0": 1}


def test_a_failed_publish_commits_nothing() -> None:
    store, sink = MemoryStore(), MemorySink(fail_next_flush=True)
    proc = _processor(store, sink)
    with pytest.raises(DeliveryFailed):
        proc.process([_event(0, "u1", "a")])
    assert store.commits == 0
    assert store.offsets() == {}


def test_the_store_holds_exactly_the_state_in_memory_after_every_batch() -> None:
    """Every changed row is persisted, sampled negatives included: a restart loses nothing."""
    from stream_rec.evaluation.synthetic import SyntheticWorld

    store, sink = MemoryStore(), MemorySink()
    proc = _processor(store, sink)
    events = list(SyntheticWorld.create(20, 40, seed=9).events(600))
    for start in range(0, len(events), 97):
        records = [
            Record("events", e["user_id"].encode(), orjson.dumps(e), offset=start + n, timestamp=0)
            for n, e in enumerate(events[start : start + 97])
        ]
        proc.process(records)
        restored = HybridModel(proc.model.params)
        snapshot = store.load(restored.layout)
        restored.restore(snapshot.model, snapshot.seen)
        live = proc.model
        for name in ("users", "items", "user_features", "item_features"):
            assert list(getattr(restored, name).ids) == list(getattr(live, name).ids), name
            np.testing.assert_array_equal(
                getattr(restored, name).view(), getattr(live, name).view()
            )
        np.testing.assert_array_equal(
            restored.items.side["neighbours"], live.items.side["neighbours"]
        )
        np.testing.assert_array_equal(restored.users.side["recent"], live.users.side["recent"])
