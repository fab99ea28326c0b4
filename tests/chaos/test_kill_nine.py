"""kill -9 at random points of a 100k-event replay, 20 times: nothing lost, nothing twice.

Measured here: about 100 s for 20 kills and restarts (each restart loads the state from
Redis and seeks to its offset). Half the workers commit every batch, half every 0.2 s
(several batches in one atomic write, so a crash loses and replays more of them). With
one partition, the final state equals, bit for bit, the state of an uninterrupted run
from the same seed.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import pytest

from stream_rec.evaluation.synthetic import SyntheticWorld
from tests.chaos.support import (
    WorkerProcess,
    applied,
    reference_model,
    same_state,
    stored_model,
    wait_until,
    worker_env,
)
from tests.integration.support import open_store, produce_events, settings_for

pytestmark = pytest.mark.chaos

EVENTS = 100_000


def test_twenty_kills_lose_nothing_and_apply_nothing_twice(
    kafka_server: Any, redis_server: Any, unique: str, tmp_path: Path
) -> None:
    settings = settings_for(
        kafka_server.bootstrap, redis_server.url, unique, kafka_server.flavor, partitions=1
    )
    events = list(SyntheticWorld.create(n_users=2_000, n_items=1_500, seed=17).events(EVENTS))
    produce_events(settings, events)
    rng = random.Random(20261203)
    plan = ["after-commit"] * 5 + ["after-exec"] * 5 + ["after-flush"] * 5 + ["kill"] * 5
    rng.shuffle(plan)
    log = tmp_path / "workers.log"
    started = time.monotonic()
    with open_store(settings) as store:
        for how in plan:
            before = applied(store)
            extra = {
                "STREAM_REC_WORKER__INSTANCE_ID": "chaos-worker",
                # Half the workers commit every batch, half several batches at once.
                "STREAM_REC_WORKER__COMMIT_INTERVAL_SECONDS": rng.choice(["0", "0.2"]),
                # Small batches: crash points after the N-th of them stay inside the stream.
                "STREAM_REC_WORKER__BATCH_MAX_EVENTS": "2000",
            }
            if how != "kill":
                extra["STREAM_REC_CRASH_AT"] = f"{how}:{rng.randint(1, 2)}"
            worker = WorkerProcess(worker_env(settings, **extra), log)
            if how == "kill":
                target = before + rng.randint(500, 3_000)
                wait_until(
                    lambda t=target: applied(store) >= t, 120, "progress before the kill", poll=0.02
                )
            else:
                wait_until(lambda w=worker: w.proc.poll() is not None, 120, f"the crash at {how}")
                assert worker.proc.returncode == 137, log.read_text()[-2_000:]
            worker.kill()
            assert applied(store) < EVENTS, "the kills came too late to test anything"
        final = WorkerProcess(
            worker_env(settings, STREAM_REC_WORKER__INSTANCE_ID="chaos-worker"), log
        )
        wait_until(lambda: applied(store) == EVENTS, 300, "the whole replay applied", poll=0.2)
        assert final.terminate() == 0
        stats = store.stats()
        stored = stored_model(store, settings.model)
    print(f"20 kills and restarts, {EVENTS} events, {time.monotonic() - started:.0f} s")
    assert stats.applied_events == EVENTS  # nothing lost, nothing twice
    assert stats.item_events_sum == EVENTS
    assert stats.partition_offsets == {f"{settings.topics.events}:0": EVENTS}
    assert same_state(stored, reference_model(settings.model, events))
