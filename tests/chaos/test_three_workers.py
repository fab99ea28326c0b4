"""Three workers in one group: rolling restarts and a stalled ("zombie") worker, while
events stream in. Every event is applied exactly once, and the zombie's stale writes are
fenced and counted.

The events are keyed by user (each user has one writer), and the items are shared: each
commit merges its item steps onto the stored rows, so the per-item counters must add up
exactly too. Measured here: about 90 s.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from stream_rec.evaluation.synthetic import SyntheticWorld
from stream_rec.stream.kafka_io import make_producer
from tests.chaos.support import WorkerProcess, applied, stored_model, wait_until, worker_env
from tests.integration.support import open_store, produce_events, read_topic, settings_for

pytestmark = pytest.mark.chaos

EVENTS = 60_000
CHUNK = 200


def test_rolling_restarts_and_a_zombie_lose_nothing_and_apply_nothing_twice(
    kafka_server: Any, redis_server: Any, unique: str, tmp_path: Path
) -> None:
    settings = settings_for(
        kafka_server.bootstrap, redis_server.url, unique, kafka_server.flavor, partitions=3
    )
    events = list(SyntheticWorld.create(n_users=3_000, n_items=1_000, seed=23).events(EVENTS))
    produce_events(settings, [])  # the topics, with their 3 partitions
    common = {
        "STREAM_REC_WORKER__COMMIT_INTERVAL_SECONDS": "0.2",
        "STREAM_REC_WORKER__BATCH_MAX_EVENTS": "1000",
        "STREAM_REC_WORKER__SHARED_REFRESH_SECONDS": "1",
        "STREAM_REC_KAFKA__MAX_POLL_INTERVAL_MS": "8000",
        "STREAM_REC_METRICS__SNAPSHOT_SECONDS": "0.5",
    }
    log = tmp_path / "workers.log"
    sent = threading.Event()

    def stream() -> None:  # about 2k events/s, evenly, while the workers come and go
        producer = make_producer(settings.kafka, settings.topics)
        try:
            for start in range(0, EVENTS, CHUNK):
                for event in events[start : start + CHUNK]:
                    key = str(event["user_id"]).encode()
                    producer.send(settings.topics.events, key=key, value=orjson.dumps(event))
                producer.flush()
                time.sleep(0.1)
        finally:
            producer.close()
        sent.set()

    producer = threading.Thread(target=stream, daemon=True)
    started = time.monotonic()
    with open_store(settings) as store:
        workers = [WorkerProcess(worker_env(settings, **common), log) for _ in range(2)]
        # The zombie-to-be commits rarely, so it holds applied but uncommitted batches.
        zombie_log = tmp_path / "zombie.log"
        zombie = WorkerProcess(
            worker_env(
                settings,
                **common
                | {
                    "STREAM_REC_WORKER__COMMIT_INTERVAL_SECONDS": "5",
                    "STREAM_REC_LOG_LEVEL": "INFO",
                },
            ),
            zombie_log,
        )
        producer.start()
        wait_until(lambda: applied(store) >= 4_000, 120, "the three workers under way")
        # Every rebalance has each member log its assignment: stall the zombie in a quiet
        # group of three, holding its partition and (committing every 5 s) uncommitted
        # batches - not inside a rebalance, where it commits everything it holds.
        wait_until(
            lambda: _settled(zombie_log, settings.topics.events, 3.0), 60, "a settled group", 0.2
        )

        # A stall past the session timeout and max_poll_interval_ms: the group gives its
        # partitions to the others, which claim them; the zombie then wakes up.
        os.kill(zombie.proc.pid, signal.SIGSTOP)
        at_stop = store.offsets()
        stopped = time.monotonic()
        wait_until(
            lambda: (
                all(o > at_stop.get(p, 0) for p, o in _events_offsets(store, settings).items())
                and len(_events_offsets(store, settings)) == 3
            ),
            60,
            "every partition moving again (the zombie's taken over)",
        )
        recovered = time.monotonic() - stopped
        time.sleep(max(0.0, 10.0 - recovered))
        os.kill(zombie.proc.pid, signal.SIGCONT)

        # Rolling restarts: each of the other two stops cleanly and a new one takes over.
        for n, worker in enumerate(list(workers)):
            before = applied(store)
            assert worker.terminate() == 0, log.read_text()[-3_000:]
            workers[n] = WorkerProcess(worker_env(settings, **common), log)
            if not sent.is_set():
                wait_until(
                    lambda b=before: applied(store) >= min(EVENTS, b + 3_000),
                    120,
                    "progress after a restart",
                )
        producer.join(120)
        wait_until(lambda: applied(store) >= EVENTS, 300, "the whole stream applied", 0.2)
        time.sleep(2.0)  # anything applied twice would show up now
        for worker in [*workers, zombie]:
            assert worker.terminate() == 0, log.read_text()[-3_000:]
        stats = store.stats()
        offsets = _events_offsets(store, settings)
        stored = stored_model(store, settings.model)  # loads: the stored rows are whole
    elapsed = time.monotonic() - started

    zombie_name = f"{socket.gethostname()}:{zombie.proc.pid}"
    fenced = max(
        (
            snap["metrics"].get("stream_rec_fenced_writes_total", 0.0)
            for snap in (
                orjson.loads(r.value) for r in read_topic(settings, settings.topics.metrics)
            )
            if snap["worker"] == zombie_name
        ),
        default=0.0,
    )
    print(
        f"3 workers, 2 rolling restarts, 1 SIGSTOP of 10 s: {EVENTS} events in {elapsed:.0f} s; "
        f"every partition moved again {recovered:.1f} s after the zombie's stop; "
        f"{stats.applied_events} applied, {fenced:.0f} fenced write(s) of the zombie"
    )
    assert stats.applied_events == EVENTS  # nothing lost, nothing twice
    assert stats.item_events_sum == EVENTS  # shared item counters: every step kept, once
    assert sum(offsets.values()) == EVENTS
    assert len(stored.items) == len({e["item_id"] for e in events})
    assert fenced >= 1


def _events_offsets(store: Any, settings: Any) -> dict[str, int]:
    """The stored next offset of each partition of the events topic."""
    prefix = settings.topics.events + ":"
    return {p: o for p, o in store.offsets().items() if p.startswith(prefix)}


def _settled(log: Path, topic: str, seconds: float) -> bool:
    """Whether the worker logging to ``log`` was last assigned one partition of ``topic``
    (its share among three members) at least ``seconds`` ago (each rebalance makes every
    member log its assignment)."""
    lines = [line for line in log.read_text().splitlines() if " assigned " in line]
    if not lines or lines[-1].count(f"{topic}:") != 1:
        return False
    at = datetime.strptime(lines[-1][:23], "%Y-%m-%d %H:%M:%S,%f")
    return (datetime.now() - at).total_seconds() >= seconds
