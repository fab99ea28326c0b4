"""Profiles through the running worker: a new user's list within a second of its profile,
and better than popularity before its first event (planted demographics)."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest

from stream_rec.evaluation.synthetic import SyntheticWorld
from stream_rec.events import RecommendationMessage
from tests.integration.support import (
    open_store,
    produce_events,
    read_topic,
    running_worker,
    wait_for,
)

pytestmark = pytest.mark.integration


def test_new_users_with_profiles_get_lists_at_once_better_than_popularity(settings: Any) -> None:
    world = SyntheticWorld.create(n_users=400, n_items=200, seed=3, segment_strength=1.0)
    profiles = list(world.profiles())
    users = [p for p in profiles if p["type"] == "user_profile"]
    items = [p for p in profiles if p["type"] == "item_metadata"]
    trained = {world.user_id(u) for u in range(300)}
    events = [e for e in world.events(30_000) if e["user_id"] in trained]
    newcomers = [p for p in users if p["user_id"] not in trained]
    with running_worker(settings), open_store(settings) as store:
        # The profiles first, then the events: the two topics are fetched side by side, and
        # the test is of profiles known before the training (the other order is realistic
        # too, but a feature learns only from the events after its profile).
        produce_events(
            settings,
            items + [p for p in users if p["user_id"] in trained],
            settings.topics.profiles,
        )
        wait_for(
            lambda: (store.stats().users, store.stats().items) == (len(trained), len(items)),
            60,
            "the profiles of the training users and of the items",
        )
        produce_events(settings, events)
        wait_for(lambda: store.stats().applied_events == len(events), 120, "the training events")
        produce_events(settings, newcomers, settings.topics.profiles)
        wait_for(
            lambda: all(store.recommendation(p["user_id"]) for p in newcomers),
            30,
            "a list for every newcomer",
        )
    records = [
        r
        for r in read_topic(settings, settings.topics.recommendations)
        if r.key.decode() in {p["user_id"] for p in newcomers}
    ]
    lists = {r.key.decode(): RecommendationMessage.model_validate_json(r.value) for r in records}
    sent = {
        orjson.loads(r.value)["user_id"]: r.timestamp / 1000
        for r in read_topic(settings, settings.topics.profiles)
        if r.value and b"user_profile" in r.value
    }
    delays = [m.generated_at - sent[u] for u, m in lists.items()]
    assert all(m.version == 1 for m in lists.values())  # before any event of theirs

    def precision(user_id: str, listed: list[str]) -> float:
        return len(set(listed) & world.liked_item_ids(int(user_id[1:]))) / len(listed)

    ours = np.mean([precision(u, [e.item_id for e in m.items]) for u, m in lists.items()])
    counts: dict[str, int] = {}
    for event in events:
        if event["type"] in ("click", "watch", "rating"):
            counts[event["item_id"]] = counts.get(event["item_id"], 0) + 1
    top = sorted(counts, key=lambda i: -counts[i])[:10]
    baseline = np.mean([precision(u, top) for u in lists])
    print(
        f"newcomers: precision@10 {ours:.2f} from profiles, popularity {baseline:.2f}; "
        f"published within {max(delays):.2f} s of the profile's record time"
    )
    assert ours > baseline + 0.1
    assert max(delays) < 1.0
