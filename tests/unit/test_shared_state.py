"""Several workers on one store: one row registry, shared rows merged, nothing counted twice."""

from __future__ import annotations

import threading
from collections import Counter

import numpy as np
import orjson
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from stream_rec.evaluation.synthetic import SyntheticWorld
from stream_rec.metrics import WorkerMetrics
from stream_rec.model import HybridModel, ModelParams
from stream_rec.model.session import merge_neighbours
from stream_rec.store import MemoryStore
from stream_rec.stream.processor import BatchProcessor, OutputTopics
from stream_rec.stream.records import MemorySink, Record
from tests.unit.support import batch_of_events

PARAMS = ModelParams(factors=4, negatives=2, top_k=5)


def _worker(store: MemoryStore, refresh: float = 3600.0) -> BatchProcessor:
    proc = BatchProcessor(
        HybridModel(PARAMS),
        store,
        MemorySink(),
        OutputTopics("recs", "dead"),
        WorkerMetrics(CollectorRegistry()),
        max_event_bytes=4096,
        model_name="t",
        stop=threading.Event(),
        shared_refresh_seconds=refresh,
    )
    proc.restore()
    return proc


def _records(events: list[dict[str, object]], partitions: int) -> dict[int, list[Record]]:
    """Events keyed by user as a producer would: user -> partition, offsets per partition."""
    out: dict[int, list[Record]] = {p: [] for p in range(partitions)}
    for event in events:
        p = int(str(event["user_id"]).removeprefix("u")) % partitions
        records = out[p]
        records.append(Record("events", b"k", orjson.dumps(event), p, len(records)))
    return out


def test_the_neighbour_merge_adds_both_writers_counts() -> None:
    stored = np.array([[7, 3, -1]], np.int32), np.array([[5.0, 2.0, 0.0]], np.float32)
    base = np.array([[7, -1, -1]], np.int32), np.array([[4.0, 0.0, 0.0]], np.float32)
    # This writer added 1 to 7 and met 9 (2.5); the other added 1 to 7 and met 3 (2.0).
    ours = np.array([[7, 9, -1]], np.int32), np.array([[5.0, 2.5, 0.0]], np.float32)
    out = np.empty((1, 3), np.int32), np.empty((1, 3), np.float32)
    merge_neighbours(*stored, *base, *ours, *out)
    assert out[0].tolist() == [[7, 9, 3]]
    assert out[1].tolist() == [[6.0, 2.5, 2.0]]


def test_two_workers_count_every_event_once_and_share_their_item_steps() -> None:
    events = list(SyntheticWorld.create(40, 30, seed=5).events(3_000))
    by_partition = _records(events, 2)
    store = MemoryStore()
    a, b = _worker(store), _worker(store)
    a.assign(["events:0"])
    b.assign(["events:1"])
    step = 250
    for start in range(0, 1_600, step):  # interleaved, each committing its own batches
        for proc, partition in ((a, 0), (b, 1)):
            chunk = by_partition[partition][start : start + step]
            if chunk:
                proc.process(chunk)
    stats = store.stats()
    assert stats.applied_events == len(events)  # every user's events, once
    assert stats.item_events_sum == len(events)  # items shared by both: no step lost
    for item_id in set(a.model.items.ids) & set(b.model.items.ids):  # one numbering
        assert a.model.items.row_of(item_id) == b.model.items.row_of(item_id)
    stored = _worker(store).model
    taken = Counter(str(e["item_id"]) for e in events)
    assert {i: int(stored.items.counts[stored.items.row_of(i) or 0]) for i in taken} == taken
    assert a._metrics.merged_commits._value.get() > 0


def test_a_worker_in_sync_writes_exactly_what_one_worker_alone_would() -> None:
    """No other writer: the merge never runs, and the state is bit for bit the sequential one."""
    events = list(SyntheticWorld.create(30, 25, seed=9).events(1_200))
    store = MemoryStore()
    proc = _worker(store)
    proc.assign(["events:0"])
    records = _records(events, 1)[0]
    for start in range(0, len(records), 100):
        proc.process(records[start : start + 100])
    reference = HybridModel(PARAMS)
    reference.apply(batch_of_events(events))
    restored = _worker(store).model
    for name in ("users", "items", "user_features", "item_features"):
        assert getattr(restored, name).view().tobytes() == getattr(reference, name).view().tobytes()
    assert proc._metrics.merged_commits._value.get() == 0


def test_a_takeover_reloads_the_users_the_previous_owner_moved_on() -> None:
    events = list(SyntheticWorld.create(20, 20, seed=2).events(600))
    records = _records(events, 1)[0]
    store = MemoryStore()
    first, second = _worker(store), _worker(store)
    first.assign(["events:0"])
    first.process(records[:300])
    second.assign(["events:0"])  # the group moved the partition: the new owner reloads
    second.process(records)  # redelivered from the start: only offsets 300 on are applied
    assert store.stats().applied_events == len(events)
    assert store.offsets() == {"events:0": len(events)}


@settings(max_examples=25, deadline=None)
@given(st.data())
def test_any_interleaving_of_two_workers_commits_and_crashes_counts_each_event_once(
    data: st.DataObject,
) -> None:
    """Two workers, one partition each, sharing items: whatever the order of their
    batches, deferred commits, refreshes and crashes, every user's and every item's
    counter ends at its number of events."""
    events = list(SyntheticWorld.create(16, 12, seed=11).events(400))
    by_partition = _records(events, 2)
    store = MemoryStore()
    refresh = data.draw(st.sampled_from([0.0001, 3600.0]))  # refresh after every merge, or never
    workers = {p: _worker(store, refresh) for p in (0, 1)}
    for p, proc in workers.items():
        proc.assign([f"events:{p}"])
    delivered = {0: 0, 1: 0}  # where each partition's delivery goes on
    while unfinished := [p for p in workers if delivered[p] < len(by_partition[p])]:
        p = data.draw(st.sampled_from(unfinished))
        proc = workers[p]
        if data.draw(st.integers(0, 9)) == 9:  # a crash: the uncommitted batches are lost
            workers[p] = proc = _worker(store, refresh)
            delivered[p] = proc.assign([f"events:{p}"]).get(f"events:{p}", 0)
        step = data.draw(st.sampled_from([60, 1, 7, 23, 41]))
        chunk = by_partition[p][delivered[p] : delivered[p] + step]
        proc.process(chunk, commit=data.draw(st.booleans()))
        delivered[p] += len(chunk)
        if data.draw(st.booleans()):
            proc.commit()
    for proc in workers.values():
        proc.commit()
    stats = store.stats()
    assert stats.applied_events == stats.item_events_sum == len(events)
    stored = _worker(store).model
    taken = Counter(str(e["item_id"]) for e in events)
    assert {i: int(stored.items.counts[stored.items.row_of(i) or 0]) for i in taken} == taken
