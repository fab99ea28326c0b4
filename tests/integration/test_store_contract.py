"""One behaviour suite for every StateStore: the Redis store on one server and on a 3-node
Redis Cluster, and its in-memory twin."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from stream_rec.model import ModelDelta, TableRows
from stream_rec.store import (
    Checkpoint,
    MemoryStore,
    RedisStore,
    StateStore,
    StoreFenced,
    StoreStateMismatch,
    StoreUnavailable,
)
from stream_rec.store.keys import USER_SHARDS


@pytest.fixture(params=["memory", "redis", "redis-cluster"])
def store(request: pytest.FixtureRequest, unique: str) -> Iterator[StateStore]:
    if request.param == "memory":
        yield MemoryStore()
        return
    server: Any = request.getfixturevalue(
        {"redis": "redis_server"}.get(request.param, "redis_cluster")
    )
    real = RedisStore(server.url, unique)
    real.start()
    try:
        yield real
    finally:
        real.close()


LAYOUT = "test-layout-1"


def _rows(ids: list[str], value: int) -> TableRows:
    return TableRows(
        ids, [f"{i}:{value}".encode() + b"\x00\xff" for i in ids], list(range(1, len(ids) + 1))
    )


def _checkpoint(users: list[str], items: list[str], value: int, offset: int) -> Checkpoint:
    return Checkpoint(
        model=ModelDelta(
            {
                "users": _rows(users, value),
                "items": _rows(items, value),
                "item_features": _rows(["genre=x"], value),
            },
            {"rating_stats": bytes([value]) * 16},
        ),
        seen=dict.fromkeys(users, items[:1]),
        lists={u: f'{{"user_id":"{u}"}}'.encode() for u in users},
        versions=dict.fromkeys(users, offset),
        offsets={"events:0": offset, "events:1": offset * 2},
        layout=LAYOUT,
    )


def test_an_empty_store_loads_an_empty_snapshot(store: StateStore) -> None:
    snapshot = store.load(LAYOUT)
    assert snapshot.model.tables["users"].ids == []
    assert snapshot.model.globals == {}
    assert snapshot.offsets == {}
    assert store.recommendation("nobody") is None


def test_commit_then_load_round_trips_every_field(store: StateStore) -> None:
    store.commit(_checkpoint(["u1", "u2"], ["i1", "i2", "i3"], 5, 10))
    store.commit(_checkpoint(["u2", "u3"], ["i3"], 7, 20))
    snap = store.load(LAYOUT)
    users = dict(
        zip(snap.model.tables["users"].ids, snap.model.tables["users"].records, strict=True)
    )
    assert users == {"u1": b"u1:5\x00\xff", "u2": b"u2:7\x00\xff", "u3": b"u3:7\x00\xff"}
    items = snap.model.tables["items"]
    assert dict(zip(items.ids, items.counts, strict=True)) == {"i1": 1, "i2": 2, "i3": 1}
    assert snap.model.tables["item_features"].ids == ["genre=x"]
    assert snap.model.globals == {"rating_stats": bytes([7]) * 16}
    assert snap.seen == {"u1": ["i1"], "u2": ["i1", "i3"], "u3": ["i3"]}
    assert snap.versions == {"u1": 10, "u2": 20, "u3": 20}
    assert snap.offsets == store.offsets() == {"events:0": 20, "events:1": 40}
    assert store.recommendation("u3") == b'{"user_id":"u3"}'


def test_stats_sum_the_counters(store: StateStore) -> None:
    store.commit(_checkpoint(["u1", "u2"], ["i1", "i2"], 0, 5))
    stats = store.stats()
    assert (stats.applied_events, stats.item_events_sum, stats.users, stats.items) == (3, 3, 2, 2)
    assert stats.partition_offsets == {"events:0": 5, "events:1": 10}


def test_state_of_another_layout_is_refused(store: StateStore) -> None:
    store.check("another-layout")  # nothing stored yet: any model may start
    store.commit(_checkpoint(["u1"], ["i1"], 0, 1))
    store.check(LAYOUT)
    with pytest.raises(StoreStateMismatch):
        store.check("another-layout")  # what a worker asks before it joins its group
    with pytest.raises(StoreStateMismatch):
        store.load("another-layout")


def test_a_real_model_survives_the_round_trip_bit_for_bit(store: StateStore) -> None:
    from stream_rec.evaluation.synthetic import SyntheticWorld
    from stream_rec.model import HybridModel, InteractionBatch, ModelParams

    events = list(SyntheticWorld.create(20, 30, seed=1).events(500))
    kinds = {"impression": 0, "click": 1, "watch": 2, "rating": 3}
    model = HybridModel(ModelParams(factors=8, negatives=4))
    model.set_item_features("i1", ["genre=drama", "decade=1990s"])
    model.apply(
        InteractionBatch.from_columns(
            [e["user_id"] for e in events],
            [e["item_id"] for e in events],
            [kinds[e["type"]] for e in events],
            [e.get("rating", e.get("watch_seconds", 0.0)) for e in events],
        )
    )
    store.commit(Checkpoint(model.snapshot(), {}, {}, {}, {"events:0": 500}, model.layout))
    copy = HybridModel(model.params)
    copy.restore(store.load(model.layout).model, {})
    for name in ("users", "items", "user_features", "item_features"):
        assert getattr(copy, name).view().tobytes() == getattr(model, name).view().tobytes()
    assert copy.rating_stats == model.rating_stats


def test_an_unreachable_redis_raises_store_unavailable() -> None:
    from stream_rec.services import free_port

    store = RedisStore(f"redis://127.0.0.1:{free_port()}/0", "x", socket_timeout=0.5)
    with pytest.raises(StoreUnavailable):
        store.start()


def test_claims_fence_older_writers(store: StateStore) -> None:
    old = store.claim(["events:0", "events:1"])
    assert old == {"events:0": 1, "events:1": 1}
    store.commit(replace(_checkpoint(["u1"], ["i1"], 1, 3), epochs=old))
    new = store.claim(["events:0"])
    assert new == {"events:0": 2}
    with pytest.raises(StoreFenced) as fenced:
        store.commit(replace(_checkpoint(["u1"], ["i1"], 9, 7), epochs=old))
    assert fenced.value.partitions == ["events:0"]
    assert store.offsets() == {"events:0": 3, "events:1": 6}  # nothing of the fenced commit
    # A claim on one partition does not fence a commit that only touches another.
    store.commit(
        replace(
            _checkpoint(["u2"], ["i2"], 1, 8),
            offsets={"events:1": 8},
            epochs={"events:1": old["events:1"]},
        )
    )
    assert store.offsets()["events:1"] == 8


def test_dedup_windows_round_trip_and_slide(store: StateStore) -> None:
    cp = _checkpoint(["u1"], ["i1"], 1, 5)
    store.commit(
        replace(cp, dedup={"events:0": [("e1", 3), ("e2", 4)]}, dedup_from={"events:0": 0})
    )
    later = _checkpoint(["u1"], ["i1"], 1, 7)
    store.commit(replace(later, dedup={"events:0": [("e3", 6)]}, dedup_from={"events:0": 4}))
    assert store.load(LAYOUT).dedup["events:0"] == [("e2", 4), ("e3", 6)]


def test_seen_items_keep_the_last_cap(store: StateStore) -> None:
    store.commit(
        replace(_checkpoint(["u1"], ["i1"], 1, 1), seen={"u1": ["a", "b", "c"]}, seen_cap=4)
    )
    store.commit(replace(_checkpoint(["u1"], ["i1"], 1, 2), seen={"u1": ["d", "e"]}, seen_cap=4))
    assert store.load(LAYOUT).seen == {"u1": ["b", "c", "d", "e"]}


def test_the_registry_numbers_ids_once_in_order(store: StateStore) -> None:
    assert store.register("items", ["a", "b"], 0) == ["a", "b"]
    # Another writer knows 1 row, registers b again and c: it learns b's row and c's.
    assert store.register("items", ["b", "c"], 1) == ["b", "c"]
    assert store.register("items", [], 0) == ["a", "b", "c"]
    assert store.register("users", ["a"], 0) == ["a"]  # one registry per table
    assert store.load(LAYOUT).registry["items"] == ["a", "b", "c"]


def test_a_commit_whose_offsets_are_stored_already_is_not_applied_again(
    store: StateStore,
) -> None:
    """The retry of a commit whose reply was lost: the stored offsets say it landed."""
    first = store.commit(_checkpoint(["u1"], ["i1"], 1, 5))
    again = store.commit(_checkpoint(["u1"], ["i1"], 9, 5))
    assert again.replayed and again.generation == first.generation == store.generation() == 1
    records = store.load(LAYOUT).model.tables["users"].records
    assert records == [b"u1:1\x00\xff"]


def test_a_writer_out_of_sync_has_its_shared_rows_rebased(store: StateStore) -> None:
    """Shared rows are rebased onto the stored ones unless nobody wrote since the sync."""
    seen: list[list[bytes | None]] = []

    def rebase(delta: ModelDelta, stored: Any, globals_: Any) -> ModelDelta:
        seen.append(list(stored["items"]))
        items = delta.tables["items"]
        merged = TableRows(items.ids, [b"merged:" + r for r in items.records], items.counts)
        return ModelDelta({**delta.tables, "items": merged}, delta.globals)

    outcome = store.commit(replace(_checkpoint(["u1"], ["i1"], 1, 5), rebase=rebase, generation=0))
    assert outcome.rebased is None and outcome.generation == 1 and seen == []
    outcome = store.commit(replace(_checkpoint(["u2"], ["i1", "i2"], 2, 6), rebase=rebase))
    assert outcome.rebased is not None and seen == [[b"i1:1\x00\xff", None]]
    items = store.load_shared(LAYOUT).model.tables["items"]
    assert dict(zip(items.ids, items.records, strict=True))["i2"] == b"merged:i2:2\x00\xff"
    users = store.load(LAYOUT).model.tables["users"]
    assert b"u2:2\x00\xff" in users.records  # users are written as they are


def test_stored_lists_expire(redis_server: Any, unique: str) -> None:
    real = RedisStore(redis_server.url, unique)
    real.start()
    try:
        real.commit(replace(_checkpoint(["u1"], ["i1"], 1, 1), list_ttl_seconds=60))
        ttl = real.client.ttl(real.keys.recommendation("u1"))
        assert 0 < int(ttl) <= 60
    finally:
        real.close()


@pytest.mark.parametrize("kind", ["redis", "redis-cluster"])
def test_user_changes_a_crash_left_in_the_outbox_are_applied_once(
    kind: str, request: pytest.FixtureRequest, unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker that dies between a commit's transaction and its user shards' step leaves
    the users' changes in the outbox: the next commit on a shard, a load or the stats
    apply them there - once, however many of them come by."""
    server: Any = request.getfixturevalue({"redis": "redis_server"}.get(kind, "redis_cluster"))
    crashed, later = RedisStore(server.url, unique), RedisStore(server.url, unique)
    crashed.start()
    later.start()
    try:
        with monkeypatch.context() as patch:
            patch.setattr(crashed, "_apply", lambda pending: None)  # dies right after EXEC
            crashed.commit(_checkpoint(["u1", "u2", "u3"], ["i1"], 1, 5))
        assert later.recommendation("u1") is None  # not in its shard yet
        assert later.load(LAYOUT).versions == {"u1": 5, "u2": 5, "u3": 5}  # the load applies
        later.commit(_checkpoint(["u1"], ["i1"], 2, 6))  # its shard takes both entries
        crashed.commit(_checkpoint(["u4"], ["i1"], 3, 7))
        for store in (later, crashed):
            stats = store.stats()
            assert (stats.applied_events, stats.users) == (1 + 2 + 3 + 1, 4)  # counts as given
            snapshot = store.load(LAYOUT)
            assert snapshot.seen == {"u1": ["i1", "i1"], "u2": ["i1"], "u3": ["i1"], "u4": ["i1"]}
            assert snapshot.versions == {"u1": 6, "u2": 5, "u3": 5, "u4": 7}
        assert later.recommendation("u2") == b'{"user_id":"u2"}'
        outboxes = [later.client.zcard(later.keys.outbox(s)) for s in range(USER_SHARDS)]
        later.commit(_checkpoint(["u5"], ["i1"], 4, 8))  # trims what it applied before
        after = [later.client.zcard(later.keys.outbox(s)) for s in range(USER_SHARDS)]
        assert sum(after) < sum(outboxes), (outboxes, after)
    finally:
        crashed.close()
        later.close()
