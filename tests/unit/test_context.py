"""Context embeddings: learned per event, bounded, persisted, and they change the lists."""

from __future__ import annotations

import threading

import numpy as np
import orjson
from prometheus_client import CollectorRegistry

from stream_rec.evaluation.synthetic import SyntheticWorld
from stream_rec.events import RecommendationMessage
from stream_rec.metrics import WorkerMetrics
from stream_rec.model import HybridModel, InteractionBatch, ModelParams
from stream_rec.store import MemoryStore
from stream_rec.stream.processor import BatchProcessor, OutputTopics
from stream_rec.stream.records import MemorySink, Record
from tests.unit.support import batch_of_events


def test_context_values_join_the_users_features_only_for_their_event() -> None:
    model = HybridModel(ModelParams(factors=4, negatives=2, max_features=3))
    model.set_user_features("u", ["age=x"])
    before = model.users.side["features"][0].copy()
    others = [f"i{n}" for n in range(20)]
    model.apply(InteractionBatch.from_columns(["v"] * 20, others, [1] * 20, [0.0] * 20))
    model.apply(
        InteractionBatch.from_columns(
            ["u", "u"], ["a", "b"], [1, 1], [0.0, 0.0], None, [1.0, 2.0], [{"device": "tv"}] * 2
        )
    )
    assert np.array_equal(model.users.side["features"][0], before)  # the slot is free again
    assert len(model.contexts) == 1
    tv = model.contexts.lookup([{"device": "tv"}], [0.0])
    assert tv[0, 0] >= 0 and model.user_features.counts is not None
    # The context's embedding moved from its initial draw: it was stepped.
    fresh = HybridModel(model.params)
    fresh.user_features.rows_for(["age=x", "ctx:device=tv"])  # the same rows, undisturbed
    assert not np.allclose(model.user_features.rows[tv[0, 0]], fresh.user_features.rows[1])


def test_the_vocabulary_is_capped_and_what_it_drops_is_counted() -> None:
    model = HybridModel(ModelParams(factors=4, negatives=2, max_context_values=2))
    devices = [{"device": f"d{n}"} for n in range(5)]
    model.apply(
        InteractionBatch.from_columns(
            ["u"] * 5, ["a", "b", "c", "d", "e"], [1] * 5, [0.0] * 5, None, [1.0] * 5, devices
        )
    )
    assert len(model.contexts) == 2
    assert model.contexts.dropped == 3
    assert (model.contexts.lookup([{"device": "d4"}], [0.0]) < 0).all()


def test_hour_bands_are_context_values_and_survive_a_snapshot() -> None:
    params = ModelParams(factors=4, negatives=2, hour_context_bands=4)
    model = HybridModel(params)
    evening = 1_700_000_000.0  # 22:13 UTC
    model.apply(InteractionBatch.from_columns(["u"], ["a"], [1], [0.0], None, [evening]))
    restored = HybridModel(params)
    restored.restore(model.snapshot(), {})
    rows = restored.contexts.lookup([None], [evening])
    assert rows[0, 0] >= 0
    assert np.array_equal(
        restored.user_features.rows[rows[0, 0]], model.user_features.rows[rows[0, 0]]
    )
    assert (restored.contexts.lookup([None], [evening - 12 * 3600]) < 0).all()  # morning: unseen


def _take_rates(world: SyntheticWorld, params: ModelParams) -> dict[str, float]:
    """Train on 30k events; then, for 200 users on each device, the chance that the item
    the user takes next there (by the world's planted probabilities) is in its top 10,
    scored for that device and scored for no context."""
    model = HybridModel(params)
    events = list(world.events(30_000))
    for first in range(0, len(events), 1_000):
        model.apply(batch_of_events(events[first : first + 1_000]))
    users = list(range(200))
    rows = np.array([model.users.row_of(world.user_id(u)) for u in users], np.int64)
    item_rows = np.array([model.items.row_of(world.item_id(i)) for i in range(world.n_items)])
    figures: dict[str, list[float]] = {"context": [], "no_context": []}
    for device in ("tv", "mobile"):
        truth = np.array([world.take_probabilities(u, device) for u in users])
        by_row = np.zeros((len(users), len(model.items)))
        known = item_rows >= 0
        by_row[:, item_rows[known]] = truth[:, known]
        contexts = model.contexts.lookup([{"device": device}] * len(users), [0.0] * len(users))
        for name, ctx in (("context", contexts), ("no_context", None)):
            listed, _ = model.recommend(rows, 10, contexts=ctx)
            # Renormalised over what the list may hold (the unseen items).
            for r, row in enumerate(listed.tolist()):
                unseen = by_row[r].copy()
                seen = [model.items.row_of(i) for i in model.seen_items(world.user_id(r))]
                unseen[[i for i in seen if i is not None]] = 0.0
                figures[name].append(float(unseen[[i for i in row if i >= 0]].sum() / unseen.sum()))
    return {name: float(np.mean(values)) for name, values in figures.items()}


def test_context_aware_lists_beat_context_free_ones_on_a_planted_context() -> None:
    world = SyntheticWorld.create(
        n_users=300, n_items=300, seed=5, context_strength=0.8, popularity_exponent=0.4
    )
    aware = _take_rates(world, ModelParams(factors=16))
    blind = _take_rates(world, ModelParams(factors=16, context_slots=0))
    print(
        f"P(next take in top 10): for its context {aware['context']:.3f}, same model without "
        f"context {aware['no_context']:.3f}, a model that ignores context {blind['no_context']:.3f}"
    )
    assert aware["context"] > aware["no_context"] * 1.15
    assert aware["context"] > blind["no_context"] * 1.15


def test_the_list_after_an_event_is_for_its_context() -> None:
    world = SyntheticWorld.create(n_users=200, n_items=200, seed=9, context_strength=0.8)
    store, sink = MemoryStore(), MemorySink()
    processor = BatchProcessor(
        HybridModel(ModelParams(factors=16)),
        store,
        sink,
        OutputTopics("recs", "dead", "profiles"),
        WorkerMetrics(CollectorRegistry()),
        max_event_bytes=65_536,
        model_name="t",
        stop=threading.Event(),
    )
    events = list(world.events(30_000))
    for first in range(0, len(events), 2_000):
        processor.process(
            [
                Record("events", b"k", orjson.dumps(e), offset=first + n, timestamp=1_000_000)
                for n, e in enumerate(events[first : first + 2_000])
            ]
        )
    lists_after: dict[str, list[RecommendationMessage]] = {}
    for round_, device in enumerate(("tv", "mobile")):
        sink.sent.clear()
        last = [
            {
                **e,
                "event_id": f"last-{device}-{u}",
                "ts": 2e9 + round_,
                "context": {"device": device},
            }
            for u, e in enumerate(events[:50])
        ]
        first = len(events) + round_ * len(last)
        processor.process(
            [
                Record("events", b"k", orjson.dumps(e), offset=first + n, timestamp=1)
                for n, e in enumerate(last)
            ]
        )
        lists_after[device] = [
            RecommendationMessage.model_validate_json(s.value)
            for s in sink.sent
            if s.topic == "recs" and s.value is not None
        ]
        assert lists_after[device]
        assert all(m.context == {"device": device} for m in lists_after[device])

    def share(device: str, after: str) -> float:
        favoured = world.device_item_ids(device)
        return float(np.mean([i.item_id in favoured for m in lists_after[after] for i in m.items]))

    print(
        f"tv genres: {share('tv', 'tv'):.2f} of the lists after a tv event, "
        f"{share('tv', 'mobile'):.2f} after a mobile one"
    )
    assert share("tv", "tv") > share("tv", "mobile") + 0.2
    assert share("mobile", "mobile") > share("mobile", "tv") + 0.2
