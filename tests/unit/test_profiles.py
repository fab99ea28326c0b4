"""Profiles in the live path: a new user's first list at once, new items recommendable."""

from __future__ import annotations

import threading

import numpy as np
import orjson
from prometheus_client import CollectorRegistry

from stream_rec.evaluation.synthetic import SyntheticWorld
from stream_rec.events import RecommendationMessage
from stream_rec.metrics import WorkerMetrics
from stream_rec.model import HybridModel, ModelParams
from stream_rec.store import MemoryStore
from stream_rec.stream.processor import REASON_HEADER, BatchProcessor, OutputTopics
from stream_rec.stream.profiles import feature_tokens
from stream_rec.stream.records import MemorySink, Record
from tests.unit.support import batch_of_events

TOPICS = OutputTopics("recs", "dead", "profiles")


def _processor(
    store: MemoryStore, sink: MemorySink, params: ModelParams | None = None
) -> BatchProcessor:
    return BatchProcessor(
        HybridModel(params or ModelParams(factors=8, negatives=4)),
        store,
        sink,
        TOPICS,
        WorkerMetrics(CollectorRegistry()),
        max_event_bytes=65_536,
        model_name="t",
        stop=threading.Event(),
    )


def _records(topic: str, messages: list[dict[str, object]], first_offset: int = 0) -> list[Record]:
    return [
        Record(topic, b"k", orjson.dumps(m), offset=first_offset + n, timestamp=1_000_000)
        for n, m in enumerate(messages)
    ]


def test_a_profile_gives_a_new_user_a_list_at_once_and_bad_profiles_are_dead_letters() -> None:
    store, sink = MemoryStore(), MemorySink()
    proc = _processor(store, sink)
    proc.process(
        _records(
            "events",
            [{"event_id": "e", "type": "click", "user_id": "old", "item_id": "i1", "ts": 1.0}],
        )
    )
    proc.process(
        _records(
            "profiles",
            [
                {
                    "type": "user_profile",
                    "user_id": "new",
                    "features": {"age": "25-34", "device": ["tv"]},
                },
                {
                    "type": "user_profile",
                    "user_id": "x",
                    "features": {"age": 25},
                },  # a number: rejected
                {
                    "type": "item_metadata",
                    "item_id": "i2",
                    "features": {"genre": ["drama"]},
                    "duration_seconds": 1200.0,
                },
            ],
        )
    )
    lists = {
        r.key.decode(): RecommendationMessage.model_validate_json(r.value) for r in sink.on("recs")
    }
    assert lists["new"].version == 1  # no event yet: its first profile
    assert {e.item_id for e in lists["new"].items} == {"i1", "i2"}  # i2 is recommendable already
    (dead,) = sink.on("dead")
    assert dict(dead.headers)[REASON_HEADER] == b"wrong_type"
    assert store.offsets() == {"events:0": 1, "profiles:0": 3}
    # The profile is state: it survives a restart, and so does the item's duration.
    restarted = _processor(store, MemorySink())
    restarted.restore()
    row = restarted.model.items.row_of("i2")
    assert row is not None and restarted.model.items.side["duration"][row, 0] == 1200.0
    tokens = restarted.model.user_features.ids
    new_row = restarted.model.users.row_of("new")
    assert new_row is not None
    assert {tokens[f] for f in restarted.model.users.side["features"][new_row] if f >= 0} == {
        "age=25-34",
        "device=tv",
    }


def test_an_update_replaces_the_feature_set_and_bumps_the_version() -> None:
    store, sink = MemoryStore(), MemorySink()
    proc = _processor(store, sink)
    proc.process(
        _records("profiles", [{"type": "user_profile", "user_id": "u", "features": {"a": "1"}}])
    )
    proc.process(
        _records("profiles", [{"type": "user_profile", "user_id": "u", "features": {"b": "2"}}], 1)
    )
    versions = [orjson.loads(r.value)["version"] for r in sink.on("recs")]
    assert versions == [1, 2]
    row = proc.model.users.row_of("u")
    assert row is not None
    tokens = proc.model.user_features.ids
    assert [tokens[f] for f in proc.model.users.side["features"][row] if f >= 0] == ["b=2"]


def test_new_items_with_metadata_reach_matching_users_before_their_first_event() -> None:
    """Planted: items of a user's liked genres; new items carry their genre only."""
    world = SyntheticWorld.create(n_users=200, n_items=300, seed=5, popularity_exponent=0.3)
    params = ModelParams(factors=16, negatives=8, session_weight=0.0)
    store, sink = MemoryStore(), MemorySink()
    proc = _processor(store, sink, params)
    old_items = {world.item_id(i) for i in range(250)}
    metadata = [
        {
            "type": "item_metadata",
            "item_id": world.item_id(i),
            "features": {"genre": list(world.item_genres[i])},
        }
        for i in range(world.n_items)
    ]
    proc.process(_records("profiles", metadata[:250]))
    events = [e for e in world.events(40_000) if e["item_id"] in old_items]
    for start in range(0, len(events), 5_000):
        proc.process(_records("events", events[start : start + 5_000], start))
    proc.process(_records("profiles", metadata[250:], 250))  # 50 new items: metadata only
    model = proc.model
    new_items = {world.item_id(i) for i in range(250, 300)}
    users = [world.user_id(u) for u in range(world.n_users)]
    lists = model.recommend_ids(users, k=50)
    matching, other = [], []
    for user, listed in zip(range(world.n_users), lists, strict=True):
        liked = world.liked_item_ids(user)
        for item, _ in listed:
            if item in new_items:
                (matching if item in liked else other).append(item)
    print(f"new items in the top-50 lists: {len(matching)} of a liked genre, {len(other)} not")
    assert matching
    assert len(matching) > 2 * len(other)  # chance would give about half as many
    assert np.isfinite(model.items.view()).all()


def test_a_cold_user_gets_its_segments_popularity_until_its_features_are_learned() -> None:
    world = SyntheticWorld.create(
        n_users=400, n_items=300, seed=8, segment_strength=1.0, popularity_exponent=0.4
    )
    params = ModelParams(factors=16, min_feature_events=10_000)
    model = HybridModel(params)
    for profile in world.profiles():
        if profile["type"] == "user_profile" and int(str(profile["user_id"])[1:]) < 300:
            model.set_user_features(str(profile["user_id"]), feature_tokens(profile["features"]))
    trained = [e for e in world.events(6_000) if int(str(e["user_id"])[1:]) < 300]
    model.apply(batch_of_events(trained))
    newcomers = list(range(300, 400))
    rows = np.array(
        [
            model.set_user_features(world.user_id(u), feature_tokens(world.user_features[u]))
            for u in newcomers
        ],
        np.int64,
    )
    listed, _ = model.recommend(rows)
    ids = model.items.ids
    popular = {ids[i] for i in model.popular(10)}

    def precision(u: int, items: set[str]) -> float:
        return len(items & world.liked_item_ids(u)) / 10

    segment = np.mean(
        [
            precision(u, {ids[i] for i in row if i >= 0})
            for u, row in zip(newcomers, listed, strict=True)
        ]
    )
    baseline = np.mean([precision(u, popular) for u in newcomers])
    print(f"newcomers, features not yet learned: segments {segment:.2f}, popularity {baseline:.2f}")
    assert segment > baseline + 0.1
    # A user whose features nobody shares gets the global recent popularity.
    (alone,) = model.recommend(np.array([model.set_user_features("z", ["planet=mars"])]))[0]
    assert {ids[i] for i in alone if i >= 0} == popular
