"""One behaviour suite for every StateStore: the Redis store and its in-memory twin."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from stream_rec.model import EntityRows
from stream_rec.store import (
    Checkpoint,
    MemoryStore,
    RedisStore,
    StateStore,
    StoreStateMismatch,
    StoreUnavailable,
)


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest, unique: str) -> Iterator[StateStore]:
    if request.param == "memory":
        yield MemoryStore()
        return
    redis_server: Any = request.getfixturevalue("redis_server")
    real = RedisStore(redis_server.url, unique)
    real.start()
    try:
        yield real
    finally:
        real.close()


def _rows(ids: list[str], width: int, value: float) -> EntityRows:
    rows = np.full((len(ids), width), value, np.float32)
    return EntityRows(ids, rows, np.arange(1, len(ids) + 1, dtype=np.int64))


def _checkpoint(users: list[str], items: list[str], value: float, offset: int) -> Checkpoint:
    return Checkpoint(
        users=_rows(users, 3, value),
        items=_rows(items, 4, value),
        seen=dict.fromkeys(users, items[:1]),
        lists={u: f'{{"user_id":"{u}"}}'.encode() for u in users},
        versions=dict.fromkeys(users, offset),
        rating_sum=0.1 + value,
        rating_count=offset,
        offsets={"events:0": offset, "events:1": offset * 2},
    )


def test_an_empty_store_loads_an_empty_snapshot(store: StateStore) -> None:
    snapshot = store.load(3, 4)
    assert snapshot.users.ids == [] and snapshot.users.rows.shape == (0, 3)
    assert snapshot.offsets == {} and snapshot.rating_count == 0
    assert store.recommendation("nobody") is None


def test_commit_then_load_round_trips_every_field(store: StateStore) -> None:
    store.commit(_checkpoint(["u1", "u2"], ["i1", "i2", "i3"], 0.5, 10))
    store.commit(_checkpoint(["u2", "u3"], ["i3"], 1.5, 20))
    snap = store.load(3, 4)
    users = dict(zip(snap.users.ids, snap.users.rows.tolist(), strict=True))
    assert users == {"u1": [0.5] * 3, "u2": [1.5] * 3, "u3": [1.5] * 3}
    counts = dict(zip(snap.items.ids, snap.items.counts.tolist(), strict=True))
    assert counts == {"i1": 1, "i2": 2, "i3": 1}
    assert snap.seen == {"u1": ["i1"], "u2": ["i1", "i3"], "u3": ["i3"]}
    assert snap.versions == {"u1": 10, "u2": 20, "u3": 20}
    assert snap.rating_sum == 0.1 + 1.5 and snap.rating_count == 20
    assert snap.offsets == store.offsets() == {"events:0": 20, "events:1": 40}
    assert store.recommendation("u3") == b'{"user_id":"u3"}'


def test_stats_sum_the_counters(store: StateStore) -> None:
    store.commit(_checkpoint(["u1", "u2"], ["i1", "i2"], 0.0, 5))
    stats = store.stats()
    assert (stats.applied_events, stats.item_events_sum, stats.users, stats.items) == (3, 3, 2, 2)
    assert stats.partition_offsets == {"events:0": 5, "events:1": 10}


def test_rows_of_another_width_are_refused(store: StateStore) -> None:
    store.commit(_checkpoint(["u1"], ["i1"], 0.0, 1))
    with pytest.raises(StoreStateMismatch):
        store.load(5, 6)


def test_float32_rows_survive_bit_for_bit(store: StateStore) -> None:
    rows = np.random.default_rng(0).normal(size=(50, 3)).astype(np.float32)
    ids = [f"u{n}" for n in range(50)]
    cp = _checkpoint(ids, ["i"], 0.0, 1)
    store.commit(
        Checkpoint(EntityRows(ids, rows, np.ones(50, np.int64)), cp.items, {}, {}, {}, 0.0, 0, {})
    )
    snap = store.load(3, 4)
    got = dict(zip(snap.users.ids, snap.users.rows, strict=True))
    for n, user in enumerate(ids):
        assert got[user].tobytes() == rows[n].tobytes()


def test_an_unreachable_redis_raises_store_unavailable() -> None:
    from stream_rec.services import free_port

    store = RedisStore(f"redis://127.0.0.1:{free_port()}/0", "x", socket_timeout=0.5)
    with pytest.raises(StoreUnavailable):
        store.start()
