"""The model on small known cases: one SGD step by hand, determinism, batching, growth."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from stream_rec.evaluation.synthetic import SyntheticWorld
from stream_rec.model import EventKind, InteractionBatch, ModelParams, StreamingMF
from stream_rec.model.tables import EntityRows, EntityTable

CLICK, WATCH, RATING, IMPRESSION = (
    EventKind.CLICK,
    EventKind.WATCH,
    EventKind.RATING,
    EventKind.IMPRESSION,
)


def _batch(
    rows: list[tuple[str, str, int, float]], durations: list[float] | None = None
) -> InteractionBatch:
    users, items, kinds, values = zip(*rows, strict=True)
    return InteractionBatch.from_columns(
        list(users), list(items), list(kinds), list(values), durations
    )


def test_one_rating_step_matches_the_equations_by_hand() -> None:
    params = ModelParams(
        factors=4,
        learning_rate=0.1,
        bias_learning_rate=0.05,
        regularization=0.02,
        bias_regularization=0.01,
        rating_weight=0.0,
    )
    model = StreamingMF(params)
    model.apply(_batch([("u", "i0", IMPRESSION, 0.0)]))  # creates rows, changes nothing else
    u, i = model.users.row_of("u"), model.items.row_of("i0")
    assert u is not None
    assert i is not None
    p = model.users.rows[u, :4].astype(np.float64).copy()
    q = model.items.rows[i, :4].astype(np.float64).copy()
    model.apply(_batch([("u", "i0", RATING, 4.0)]))
    mu = 4.0  # the mean of the ratings so far (this one)
    err = 4.0 - (mu + 0.0 + 0.0 + p @ q)
    np.testing.assert_allclose(model.users.rows[u, 4], 0.05 * err, rtol=1e-5)
    np.testing.assert_allclose(model.items.rows[i, 4], 0.05 * err, rtol=1e-5)
    np.testing.assert_allclose(model.users.rows[u, :4], p + 0.1 * (err * q - 0.02 * p), rtol=1e-5)
    np.testing.assert_allclose(model.items.rows[i, :4], q + 0.1 * (err * p - 0.02 * q), rtol=1e-5)
    assert model.rating_stats == (4.0, 1)
    assert model.users.counts[u] == 2
    assert model.items.counts[i] == 2


def test_a_click_ranks_the_clicked_item_above_a_negative() -> None:
    model = StreamingMF(ModelParams(factors=8, negatives=1))
    model.apply(_batch([("other", "a", CLICK, 1.0), ("other", "b", CLICK, 1.0)]))
    u = model.users.rows_for(["u"])[0]
    items = model.items.rows_for(["a", "b"])

    def margin() -> float:
        s = model.users.rows[u, :8] @ model.items.rows[items, :8].T + model.items.rows[items, 9]
        return float(s[0] - s[1])

    before = margin()
    for _ in range(20):
        model.apply(_batch([("u", "a", CLICK, 1.0)]))
    assert margin() > before + 0.1


def test_watch_weight_follows_the_watched_fraction() -> None:
    short = StreamingMF(ModelParams(factors=8, min_watch_fraction=0.1))
    short.apply(_batch([("x", "a", CLICK, 1.0), ("x", "b", CLICK, 1.0)]))
    long = StreamingMF(ModelParams(factors=8, min_watch_fraction=0.1))
    long.apply(_batch([("x", "a", CLICK, 1.0), ("x", "b", CLICK, 1.0)]))
    tiny = short.apply(_batch([("u", "a", WATCH, 5.0)], durations=[600.0]))
    full = long.apply(_batch([("u", "a", WATCH, 600.0)], durations=[600.0]))
    assert tiny.positives == 0, "5 s of 600 s is under the minimum fraction: not a positive"
    assert full.positives == 1


def test_same_seed_same_state_and_batching_does_not_matter() -> None:
    world = SyntheticWorld.create(40, 60, seed=1)
    events = list(world.events(2_000))
    batch = _from_events(events)

    one = StreamingMF(ModelParams(factors=8))
    one.apply(batch)
    split = StreamingMF(ModelParams(factors=8))
    for start in range(0, len(events), 137):
        split.apply(_from_events(events[start : start + 137]))
    np.testing.assert_array_equal(one.users.view(), split.users.view())
    np.testing.assert_array_equal(one.items.view(), split.items.view())
    assert one.rating_stats == split.rating_stats

    other_seed = StreamingMF(ModelParams(factors=8, seed=2))
    other_seed.apply(batch)
    assert not np.array_equal(one.items.view(), other_seed.items.view())


def test_initial_vectors_depend_only_on_the_id() -> None:
    a = EntityTable(k=6, width=7, init_std=0.1, seed=5)
    b = EntityTable(k=6, width=7, init_std=0.1, seed=5)
    a.rows_for(["x", "y", "z"])
    b.rows_for(["z", "q", "x"])
    np.testing.assert_array_equal(a.rows[a.row_of("x")], b.rows[b.row_of("x")])
    np.testing.assert_array_equal(a.rows[a.row_of("z")], b.rows[b.row_of("z")])
    assert np.all(a.rows[: len(a), 6] == 0.0)  # biases start at zero
    draws = EntityTable(k=64, width=64, init_std=0.1, seed=1)
    draws.rows_for([f"id{n}" for n in range(2_000)])
    assert abs(float(draws.view().std()) - 0.1) < 0.005
    assert abs(float(draws.view().mean())) < 0.005


def test_tables_grow_and_keep_rows() -> None:
    table = EntityTable(k=2, width=3, init_std=0.1, seed=0)
    first = table.rows_for(["a"])[0]
    table.rows[first] = [1.0, 2.0, 3.0]
    table.rows_for([f"n{i}" for i in range(5_000)])
    assert len(table) == 5_001
    assert table.rows.shape[0] >= 5_001
    np.testing.assert_array_equal(table.rows[first], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="width"):
        table.restore(EntityRows(["a"], np.zeros((1, 5), np.float32), np.zeros(1, np.int64)))


def test_export_restore_round_trip_gives_identical_lists() -> None:
    world = SyntheticWorld.create(30, 50, seed=4)
    events = list(world.events(1_500))
    model = StreamingMF(ModelParams(factors=8))
    applied = model.apply(_from_events(events))
    users, items = model.export(np.arange(len(model.users)), np.arange(len(model.items)))
    seen = {u: model.seen_items(u) for u in model.users.ids}
    copy = StreamingMF(ModelParams(factors=8))
    copy.restore(users, items, seen, *model.rating_stats)
    expected = model.recommend(applied.user_rows)
    got = copy.recommend(np.array([copy.users.row_of(u) for u in users.ids]))
    assert [model.items.ids[i] for i in expected[0][0]] == [copy.items.ids[i] for i in got[0][0]]
    np.testing.assert_array_equal(expected[1], got[1])


def test_lists_exclude_consumed_items_but_not_impressions() -> None:
    model = StreamingMF(ModelParams(factors=4, top_k=3))
    model.apply(
        _batch(
            [
                ("u", "a", CLICK, 1.0),
                ("u", "b", IMPRESSION, 0.0),
                ("u", "c", RATING, 2.0),
                ("v", "d", WATCH, 500.0),
            ]
        )
    )
    (listed,) = model.recommend_ids(["u"])
    names = {item for item, _ in listed}
    assert names == {"b", "d"}  # a (clicked) and c (rated) are excluded; only 2 items remain
    assert model.recommend_ids(["nobody"]) == [[]]


def _from_events(events: list[dict[str, Any]]) -> InteractionBatch:
    kinds = {"impression": IMPRESSION, "click": CLICK, "watch": WATCH, "rating": RATING}
    return InteractionBatch.from_columns(
        [e["user_id"] for e in events],
        [e["item_id"] for e in events],
        [kinds[e["type"]] for e in events],
        [e.get("rating", e.get("watch_seconds", 0.0)) for e in events],
        [e.get("duration_seconds", np.nan) for e in events],
    )
