"""The model on small known cases: one step by hand, determinism, batching, state."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from stream_rec.evaluation.synthetic import SyntheticWorld
from stream_rec.model import EventKind, HybridModel, InteractionBatch, ModelParams
from stream_rec.model.tables import EntityTable, TableRows

CLICK, WATCH, RATING, IMPRESSION = (
    EventKind.CLICK,
    EventKind.WATCH,
    EventKind.RATING,
    EventKind.IMPRESSION,
)
SMALL = ModelParams(factors=8, negatives=4)


def _batch(
    rows: list[tuple[str, str, int, float]], durations: list[float] | None = None
) -> InteractionBatch:
    users, items, kinds, values = zip(*rows, strict=True)
    return InteractionBatch.from_columns(
        list(users), list(items), list(kinds), list(values), durations
    )


def _from_events(events: list[dict[str, Any]]) -> InteractionBatch:
    kinds = {"impression": IMPRESSION, "click": CLICK, "watch": WATCH, "rating": RATING}
    return InteractionBatch.from_columns(
        [e["user_id"] for e in events],
        [e["item_id"] for e in events],
        [kinds[e["type"]] for e in events],
        [e.get("rating", e.get("watch_seconds", 0.0)) for e in events],
        [e.get("duration_seconds", np.nan) for e in events],
    )


def test_one_rating_step_matches_the_equations_by_hand() -> None:
    params = ModelParams(
        factors=4,
        learning_rate=0.1,
        bias_learning_rate=0.05,
        regularization=0.02,
        bias_regularization=0.01,
        rating_weight=0.0,
        rating_scale_learning_rate=0.0,
        session_length=0,
    )
    model = HybridModel(params)
    model.apply(_batch([("u", "i0", IMPRESSION, 0.0)]))  # creates rows, changes nothing else
    u, i = model.users.row_of("u"), model.items.row_of("i0")
    assert u is not None and i is not None
    p = model.users.rows[u, :4].astype(np.float64).copy()
    q = model.items.rows[i, :4].astype(np.float64).copy()
    applied = model.apply(_batch([("u", "i0", RATING, 4.0)]))
    assert applied.predictions[0] == pytest.approx(p @ q, rel=1e-5)  # mu before = 0 (no rating yet)
    mu = 4.0  # river updates the mean first: it includes this rating
    g = 2 * ((mu + p @ q) - 4.0)  # d/d pred of (pred - y)^2
    np.testing.assert_allclose(model.users.rows[u, 4], -0.05 * g, rtol=1e-5)
    np.testing.assert_allclose(model.items.rows[i, 4], -0.05 * g, rtol=1e-5)
    np.testing.assert_allclose(model.users.rows[u, :4], p - 0.1 * (g * q + 0.02 * p), rtol=1e-5)
    np.testing.assert_allclose(model.items.rows[i, :4], q - 0.1 * (g * p + 0.02 * q), rtol=1e-5)
    assert model.rating_stats == (4.0, 1)
    assert model.users.counts[u] == 2 and model.items.counts[i] == 2


def test_a_click_ranks_the_clicked_item_above_the_others() -> None:
    model = HybridModel(replace(SMALL, session_length=0))
    model.apply(_batch([("other", f"i{n}", CLICK, 1.0) for n in range(6)]))
    for _ in range(30):
        model.apply(_batch([("u", "i3", CLICK, 1.0)]))
    u = model.users.row_of("u")
    assert u is not None
    model._seen[u].clear()  # look at the scores, not at what is excluded
    (after,) = model.recommend_ids(["u"], k=1)
    assert after[0][0] == "i3"


def test_watch_weight_follows_the_watched_fraction() -> None:
    model = HybridModel(replace(SMALL, min_watch_fraction=0.1))
    model.apply(_batch([("x", "a", CLICK, 1.0), ("x", "b", CLICK, 1.0)]))
    tiny = model.apply(_batch([("u", "a", WATCH, 5.0)], durations=[600.0]))
    full = model.apply(_batch([("v", "a", WATCH, 600.0)], durations=[600.0]))
    assert tiny.ranking_steps == 0, "5 s of 600 s is under the minimum fraction: not a positive"
    assert 1 <= full.ranking_steps <= SMALL.negatives  # one step per sampled negative


def test_same_seed_same_state_and_batching_does_not_matter() -> None:
    events = list(SyntheticWorld.create(40, 60, seed=1).events(2_000))
    one = HybridModel(SMALL)
    one.apply(_from_events(events))
    split = HybridModel(SMALL)
    for start in range(0, len(events), 137):
        split.apply(_from_events(events[start : start + 137]))
    for table in ("users", "items", "user_features", "item_features"):
        np.testing.assert_array_equal(getattr(one, table).view(), getattr(split, table).view())
    np.testing.assert_array_equal(one.items.side["neighbours"], split.items.side["neighbours"])
    assert one.rating_stats == split.rating_stats

    other_seed = HybridModel(replace(SMALL, seed=2))
    other_seed.apply(_from_events(events))
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


def test_tables_grow_keep_rows_and_refuse_another_layout() -> None:
    table = EntityTable(k=2, width=3, init_std=0.1, seed=0)
    first = table.rows_for(["a"])[0]
    table.rows[first] = [1.0, 2.0, 3.0]
    table.rows_for([f"n{i}" for i in range(5_000)])
    assert len(table) == 5_001 and table.rows.shape[0] >= 5_001
    np.testing.assert_array_equal(table.rows[first], [1.0, 2.0, 3.0])
    wider = EntityTable(k=2, width=5, init_std=0.1, seed=0)
    with pytest.raises(ValueError, match="use a new key prefix"):
        wider.restore(table.export(np.array([0])))


def test_snapshot_and_restore_give_the_same_model_bit_for_bit() -> None:
    world = SyntheticWorld.create(30, 50, seed=4)
    model = HybridModel(SMALL)
    model.set_user_features("u1", ["age=25-34", "country=de"])
    model.set_item_features("i3", ["genre=drama"])
    applied = model.apply(_from_events(list(world.events(1_500))))
    seen = {u: model.seen_items(u) for u in model.users.ids}
    copy = HybridModel(SMALL)
    copy.restore(model.snapshot(), seen)
    for table in ("users", "items", "user_features", "item_features"):
        assert list(getattr(copy, table).ids) == list(getattr(model, table).ids)
        np.testing.assert_array_equal(getattr(copy, table).view(), getattr(model, table).view())
    expected, got = model.recommend(applied.user_rows), copy.recommend(applied.user_rows)
    np.testing.assert_array_equal(expected[0], got[0])
    np.testing.assert_array_equal(expected[1], got[1])
    # And both go on identically.
    more = _from_events(list(world.events(300, seed=99)))
    model.apply(more)
    copy.apply(more)
    np.testing.assert_array_equal(model.items.view(), copy.items.view())


def test_take_changes_returns_exactly_the_changed_rows() -> None:
    model = HybridModel(SMALL)
    model.apply(_batch([("u1", "a", CLICK, 1.0), ("u2", "b", CLICK, 1.0)]))
    model.take_changes()
    assert model.take_changes().tables["users"].ids == []
    model.apply(_batch([("u1", "c", RATING, 5.0)]))
    changes = model.take_changes()
    assert changes.tables["users"].ids == ["u1"]
    assert "c" in changes.tables["items"].ids
    assert isinstance(changes.tables["items"], TableRows)


def test_lists_exclude_consumed_items_but_not_impressions() -> None:
    model = HybridModel(replace(SMALL, top_k=3))
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
    assert {item for item, _ in listed} == {"b", "d"}  # a and c were consumed


def test_an_unknown_user_gets_the_recently_popular_items() -> None:
    model = HybridModel(SMALL)
    model.apply(
        _batch([(f"u{n}", "hit", CLICK, 1.0) for n in range(5)] + [("u9", "other", CLICK, 1.0)])
    )
    (listed,) = model.recommend_ids(["nobody"], k=2)
    assert [item for item, _ in listed] == ["hit", "other"]


def test_the_session_signal_recommends_what_others_took_next() -> None:
    """Many users took A then B; a new user who takes A is offered B first."""
    model = HybridModel(replace(SMALL, session_weight=5.0))
    rows = []
    for n in range(40):
        rows += [
            (f"u{n}", "A", CLICK, 1.0),
            (f"u{n}", "B", CLICK, 1.0),
            (f"u{n}", f"x{n}", CLICK, 1.0),
        ]
    model.apply(_batch(rows))
    model.apply(_batch([("new", "A", CLICK, 1.0)]))
    (listed,) = model.recommend_ids(["new"], k=1)
    assert listed[0][0] == "B"


def test_co_visitation_memory_stays_bounded() -> None:
    model = HybridModel(replace(SMALL, neighbours=5, session_length=3))
    model.apply(_batch([("u", f"i{n}", CLICK, 1.0) for n in range(200)]))
    neighbours = model.items.side["neighbours"][: len(model.items)]
    assert neighbours.shape[1] == 5
    assert (neighbours >= 0).sum(axis=1).max() <= 5


def test_features_give_a_new_user_a_list_before_any_event() -> None:
    """Planted demographics: users' segments decide their genres; a new user with a profile
    gets lists from its segment's taste, far better than popularity."""
    world = SyntheticWorld.create(n_users=400, n_items=200, seed=3, segment_strength=1.0)
    params = replace(ModelParams(factors=16), session_weight=0.0)
    model = HybridModel(params)
    train_users = set(range(300))
    for user in train_users:
        model.set_user_features(
            world.user_id(user), [f"{k}={v}" for k, v in world.user_features[user].items()]
        )
    events = [e for e in world.events(30_000) if int(e["user_id"][1:]) in train_users]
    model.apply(_from_events(events))
    new_users = range(300, 400)
    for user in new_users:
        model.set_user_features(
            world.user_id(user), [f"{k}={v}" for k, v in world.user_features[user].items()]
        )
    lists = model.recommend_ids([world.user_id(u) for u in new_users])
    popular = [model.items.ids[i] for i in model.popular()]

    def precision(user: int, items: list[str]) -> float:
        return len(set(items) & world.liked_item_ids(user)) / len(items)

    with_features = np.mean(
        [precision(u, [i for i, _ in lst]) for u, lst in zip(new_users, lists, strict=True)]
    )
    by_popularity = np.mean([precision(u, popular) for u in new_users])
    print(
        f"new users with profiles: precision@10 {with_features:.2f}, popularity {by_popularity:.2f}"
    )
    assert with_features > by_popularity + 0.15


def test_the_ratings_kernel_gives_the_general_kernels_result_bit_for_bit() -> None:
    """Ratings that only take the explicit step run in a lean loop: the same numbers."""
    from stream_rec.bench import explicit_params

    events = [
        e for e in SyntheticWorld.create(50, 80, seed=8).events(3_000) if e["type"] == "rating"
    ]
    batch = _from_events(events)
    params = explicit_params(16)
    fast = HybridModel(params)
    # Ratings still enter the session here (which moves no factor): the general kernel runs.
    general = HybridModel(replace(params, session_min_rating=0.5))
    rows = fast.users.rows_for(batch.user_ids), fast.items.rows_for(batch.item_ids)
    assert fast._explicit_only(*rows, batch)
    assert not general._explicit_only(*rows, batch)
    np.testing.assert_array_equal(fast.apply(batch).predictions, general.apply(batch).predictions)
    np.testing.assert_array_equal(fast.users.view(), general.users.view())
    np.testing.assert_array_equal(fast.items.view(), general.items.view())
    assert fast.rating_stats == general.rating_stats


def test_list_diversity_is_one_minus_the_mean_pairwise_cosine() -> None:
    model = HybridModel(SMALL)
    model.apply(_batch([("u", f"i{n}", CLICK, 1.0) for n in range(12)]))
    rng = np.random.default_rng(3)
    for size in (2, 3, 7, 12):
        rows = rng.choice(12, size, replace=False).tolist()
        vectors = model.items.rows[rows, : model.k].astype(np.float64)
        vectors[0] = 0.0 if size == 7 else vectors[0]  # a zero vector: its cosines are 0
        model.items.rows[rows[0], : model.k] = vectors[0]
        unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1), 1e-300)[:, None]
        pairs = [float(unit[a] @ unit[b]) for a in range(size) for b in range(a + 1, size)]
        assert model.list_diversity(rows) == pytest.approx(1.0 - np.mean(pairs), abs=1e-9)
    assert model.list_diversity([4]) is None
