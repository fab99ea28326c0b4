"""Producer retries re-send 10% of the events with the same event_id, and then the
application replays the whole stream: the state is that of the de-duplicated stream."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from stream_rec.evaluation.synthetic import SyntheticWorld
from tests.chaos.support import (
    WorkerProcess,
    reference_model,
    same_state,
    stored_model,
    wait_until,
    worker_env,
)
from tests.integration.support import open_store, produce_events, settings_for

pytestmark = pytest.mark.chaos

EVENTS = 30_000


def test_resent_and_replayed_events_change_nothing(
    kafka_server: Any, redis_server: Any, unique: str, tmp_path: Path
) -> None:
    settings = settings_for(
        kafka_server.bootstrap, redis_server.url, unique, kafka_server.flavor, partitions=1
    )
    events = list(SyntheticWorld.create(n_users=600, n_items=500, seed=9).events(EVENTS))
    rng = random.Random(3)
    stream = list(events)
    for event in rng.sample(events, EVENTS // 10):  # each resent a little later than the original
        position = stream.index(event) + rng.randint(1, 500)
        stream.insert(min(position, len(stream)), event)
    produce_events(settings, stream)
    with open_store(settings) as store:
        worker = WorkerProcess(worker_env(settings), tmp_path / "worker.log")
        wait_until(
            lambda: sum(store.stats().partition_offsets.values()) == len(stream),
            240,
            "the stream consumed",
        )
        assert worker.terminate() == 0
        first = store.stats()
        state = stored_model(store, settings.model)
        # The whole stream again, as an application replaying its log; then a worker of a
        # new consumer group, which Kafka would start from offset 0.
        produce_events(settings, events)
        env = worker_env(settings, STREAM_REC_WORKER__GROUP_ID=f"{unique}-second-group")
        replayer = WorkerProcess(env, tmp_path / "replayer.log")
        wait_until(
            lambda: sum(store.stats().partition_offsets.values()) == len(stream) + EVENTS,
            240,
            "the replay consumed",
        )
        assert replayer.terminate() == 0
        second = store.stats()
        replayed = stored_model(store, settings.model)
    assert first.applied_events == EVENTS == second.applied_events
    assert first.item_events_sum == EVENTS == second.item_events_sum
    assert same_state(state, replayed), "the replay changed the state"
    assert same_state(state, reference_model(settings.model, events))
