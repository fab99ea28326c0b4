"""The batch processor with in-memory twins: lists, dead letters, offsets, retries."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from stream_rec.evaluation.synthetic import SyntheticWorld
from stream_rec.events import RecommendationMessage
from stream_rec.metrics import WorkerMetrics
from stream_rec.model import HybridModel, InteractionBatch, ModelParams
from stream_rec.store import MemoryStore, StoreFenced, StoreStateMismatch
from stream_rec.stream.processor import REASON_HEADER, SOURCE_HEADER, BatchProcessor, OutputTopics
from stream_rec.stream.records import DeliveryFailed, MemorySink, Record

TOPICS = OutputTopics("recs", "dead")


def _processor(
    store: MemoryStore,
    sink: MemorySink,
    stop: threading.Event | None = None,
    metrics: WorkerMetrics | None = None,
    params: ModelParams | None = None,
) -> BatchProcessor:
    return BatchProcessor(
        HybridModel(params or ModelParams(factors=4, top_k=3, negatives=4)),
        store,
        sink,
        TOPICS,
        metrics or WorkerMetrics(CollectorRegistry()),
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
    assert lists["u1"].version == 2  # its count of applied events
    assert lists["u1"].event_ts == 102.0
    assert lists["u1"].model == "test"
    assert store.commits == 1
    assert store.offsets() == {"events:0": 4}
    assert store.recommendation("u1") == next(r.value for r in sink.on("recs") if r.key == b"u1")
    assert result.next_offsets == {("events", 0): 4}


def test_batches_publish_at_once_and_commit_together() -> None:
    store, sink = MemoryStore(), MemorySink()
    proc = _processor(store, sink)
    proc.process([_event(0, "u1", "a"), _event(1, "u2", "b")], commit=False)
    proc.process([_event(2, "u1", "c")], commit=False)
    assert len(sink.on("recs")) == 3  # every batch's lists are out already
    assert store.commits == 0 and store.offsets() == {}
    # A redelivery of the uncommitted records is not applied again in memory.
    assert proc.process([_event(1, "u2", "b")], commit=False).applied == 0
    assert proc.commit() == {("events", 0): 3}
    assert store.commits == 1
    assert store.offsets() == {"events:0": 3}
    assert store.stats().applied_events == 3
    latest = RecommendationMessage.model_validate_json(store.recommendation("u1") or b"")
    assert latest.version == 2  # the newer of u1's two lists
    assert proc.commit() == {}  # nothing new: nothing written
    assert store.commits == 1


def test_a_worker_checks_the_store_at_start_and_loads_the_state_once_assigned() -> None:
    store = MemoryStore()
    first = _processor(store, MemorySink())
    first.assign(["events:0"])
    first.process([_event(0, "u1", "a"), _event(1, "u2", "b")])
    joining = _processor(store, MemorySink())
    joining.check_store()  # what start() does: no rows are loaded yet
    assert len(joining.model.users) == 0
    assert joining.assign(["events:0"]) == {"events:0": 2}
    assert sorted(joining.model.users.ids) == ["u1", "u2"]  # loaded once, when assigned
    other_shape = _processor(store, MemorySink(), params=ModelParams(factors=8))
    with pytest.raises(StoreStateMismatch):
        other_shape.check_store()


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


def _state_bytes(model: HybridModel) -> bytes:
    return b"".join(
        getattr(model, t).view().tobytes()
        for t in ("users", "items", "user_features", "item_features")
    )


def test_duplicates_and_replays_are_not_applied_twice() -> None:
    store, sink = MemoryStore(), MemorySink()
    proc = _processor(store, sink)
    proc.process([_event(0, "u1", "a"), _event(1, "u1", "b")])
    # A redelivery of offset 1 (e.g. after a seek race) and the same event id at a new offset.
    again = Record("events", b"u1", _event(1, "u1", "b").value, offset=1)
    resent = Record("events", b"u1", _event(1, "u1", "b").value, offset=2)
    result = proc.process([again, resent, _event(3, "u1", "c")])
    assert result.replayed == 1 and result.duplicates == 1 and result.applied == 1
    assert store.stats().applied_events == 3
    assert store.offsets() == {"events:0": 4}


def test_the_dedup_window_survives_a_restart() -> None:
    store = MemoryStore()
    _processor(store, MemorySink()).process([_event(0, "u1", "a")])
    restarted = _processor(store, MemorySink())
    restarted.restore()
    resent = Record("events", b"u1", _event(0, "u1", "a").value, offset=5)
    assert restarted.process([resent]).duplicates == 1
    assert store.stats().applied_events == 1


def test_a_fenced_commit_writes_nothing() -> None:
    store = MemoryStore()
    zombie = _processor(store, MemorySink())
    zombie.assign(["events:0"])
    zombie.process([_event(0, "u1", "a")])
    successor = _processor(store, MemorySink())
    successor.restore()
    successor.assign(["events:0"])  # a rebalance gave the partition to another worker
    before = store.commits
    with pytest.raises(StoreFenced):
        zombie.process([_event(1, "u1", "b")])
    assert store.commits == before
    assert store.offsets() == {"events:0": 1}
    successor.process([_event(1, "u1", "b")])
    assert store.offsets() == {"events:0": 2} and store.stats().applied_events == 2


def test_seen_items_are_capped_in_the_model_and_the_store() -> None:
    store, sink = MemoryStore(), MemorySink()
    proc = BatchProcessor(
        HybridModel(ModelParams(factors=4, negatives=2, max_seen_items=3)),
        store,
        sink,
        TOPICS,
        WorkerMetrics(CollectorRegistry()),
        max_event_bytes=4096,
        model_name="t",
        stop=threading.Event(),
    )
    proc.process([_event(n, "u1", f"i{n}") for n in range(6)])
    assert proc.model.seen_items("u1") == ["i3", "i4", "i5"]
    assert store.load(proc.model.layout).seen == {"u1": ["i3", "i4", "i5"]}


@settings(max_examples=30, deadline=None)
@given(st.data())
def test_any_interleaving_of_replays_and_duplicates_gives_the_deduplicated_state(
    data: st.DataObject,
) -> None:
    """Deliveries cut into batches anyhow, with redelivered offsets and resent event ids,
    batches committed one by one or several at once, give exactly the state of the stream
    applied once."""
    events = list(SyntheticWorld.create(12, 20, seed=3).events(60))
    reference = HybridModel(ModelParams(factors=4, negatives=2))
    reference.apply(_batch_of(events))
    store = MemoryStore()
    proc = _processor(store, MemorySink(), params=reference.params)
    log: list[Record] = []  # what the partition holds: every send, resends included
    position = 0
    while position < len(events) or data.draw(st.booleans()):
        if position < len(events):
            step = data.draw(st.integers(1, 7))
            for event in events[position : position + step]:
                log.append(Record("events", b"k", orjson.dumps(event), offset=len(log)))
            position += step
        if log and data.draw(st.booleans()):  # a producer retry: the same event, a new offset
            resend = log[data.draw(st.integers(0, len(log) - 1))]
            log.append(Record("events", b"k", resend.value, offset=len(log)))
        # Delivery resumes at the committed offset or earlier (a redelivery), never later:
        # Kafka hands out a partition in order from where the consumer was positioned.
        committed = proc.ledger.next_offsets.get("events:0", 0)
        start = data.draw(st.integers(0, min(committed, len(log) - 1)))
        # The worker commits some batches at once (commit_interval_seconds): a crash
        # loses the uncommitted ones, which the restart applies again.
        proc.process(log[start:], commit=data.draw(st.booleans()))
        if data.draw(st.booleans()):  # a crash and restart in between
            proc = _processor(store, MemorySink(), params=reference.params)
            proc.restore()
        if position >= len(events) and not data.draw(st.booleans()):
            break
    proc.process(log)
    restored = HybridModel(reference.params)
    restored.restore(store.load(reference.layout).model, {})
    assert _state_bytes(restored) == _state_bytes(reference)
    assert store.stats().applied_events == len(events)


def _batch_of(events: list[dict[str, Any]]) -> InteractionBatch:
    kinds = {"impression": 0, "click": 1, "watch": 2, "rating": 3}
    return InteractionBatch.from_columns(
        [e["user_id"] for e in events],
        [e["item_id"] for e in events],
        [kinds[e["type"]] for e in events],
        [e.get("rating", e.get("watch_seconds", 0.0)) for e in events],
        [e.get("duration_seconds", float("nan")) for e in events],
    )


def test_positives_are_counted_against_the_list_their_user_had() -> None:
    registry = CollectorRegistry()
    proc = _processor(MemoryStore(), MemorySink(), metrics=WorkerMetrics(registry))
    proc.process([_event(0, "u2", "b"), _event(1, "u2", "c"), _event(2, "u1", "a")])
    # u1's list holds b and c (top_k=3 of the items u1 has not taken); u3 has no list yet.
    proc.process([_event(3, "u1", "b"), _event(4, "u3", "a"), _event(5, "u1", "a")])
    # u1's click on b is scored and hits; u3's is not scored (no list); a is not new to u1.
    assert registry.get_sample_value("stream_rec_online_positives_total") == 1.0
    assert registry.get_sample_value("stream_rec_online_hits_total") == 1.0
