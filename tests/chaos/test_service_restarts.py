"""Restart the Kafka broker 3 times and Redis (AOF) 3 times mid-stream: the worker
recovers with no operator action and the counters come out exact.

The stream (40k events at 500/s) runs while the services restart, 2 s apart, each
restart waiting until the worker applies events again; the time to that is printed.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import orjson
import pytest

from stream_rec.config import Settings
from stream_rec.evaluation.synthetic import SyntheticWorld
from stream_rec.services import LocalKafka, LocalRedis
from stream_rec.stream.kafka_io import make_producer
from tests.chaos.support import WorkerProcess, applied, wait_until, worker_env
from tests.integration.support import create_topics, open_store, settings_for

pytestmark = pytest.mark.chaos

EVENTS = 40_000


class _Writer(threading.Thread):
    """Writes the events at a steady rate; counts the acknowledged ones."""

    def __init__(self, settings: Settings, events: list[dict[str, object]], rate: float) -> None:
        super().__init__(daemon=True)
        self._producer = make_producer(
            settings.kafka, settings.topics, retries=2**31 - 1, delivery_timeout_ms=300_000
        )
        self._topic = settings.topics.events
        self._events = events
        self._rate = rate
        self.acked = 0
        self.failed: list[BaseException] = []
        self._lock = threading.Lock()

    def _ok(self, _metadata: object) -> None:
        with self._lock:
            self.acked += 1

    def run(self) -> None:
        started = time.monotonic()
        for n, event in enumerate(self._events):
            delay = started + n / self._rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            future = self._producer.send(
                self._topic, key=str(event["user_id"]).encode(), value=orjson.dumps(event)
            )
            future.add_callback(self._ok)
            future.add_errback(self.failed.append)
        self._producer.flush(timeout=300)
        self._producer.close()


def test_broker_and_redis_restarts_lose_nothing(tmp_path: Path, unique: str) -> None:
    with LocalRedis(workdir=tmp_path / "redis", appendonly=True) as redis_server:
        kafka = LocalKafka("apache", workdir=tmp_path / "kafka")
        kafka.start()
        try:
            settings = settings_for(
                kafka.bootstrap, redis_server.url, unique, "apache", partitions=2
            )
            create_topics(settings)
            events = list(SyntheticWorld.create(n_users=800, n_items=600, seed=4).events(EVENTS))
            worker = WorkerProcess(worker_env(settings), tmp_path / "worker.log")
            writer = _Writer(settings, events, rate=500)  # 80 s of stream: it outlasts the restarts
            writer.start()
            recoveries = []
            with open_store(settings) as store:
                wait_until(lambda: applied(store) > 2_000, 120, "the worker under way")
                for service in (kafka, redis_server, kafka, redis_server, kafka, redis_server):
                    time.sleep(2.0)
                    mark = applied(store)
                    service.restart()
                    began = time.monotonic()
                    acked = writer.acked
                    try:
                        wait_until(
                            lambda m=mark: applied(store) > m,
                            120,
                            f"progress after restarting {type(service).__name__}",
                        )
                    except AssertionError as exc:  # say whether the stream itself had stalled
                        raise AssertionError(
                            f"{exc}; events acknowledged to the writer: {acked} at the restart, "
                            f"{writer.acked} now; applied: {mark} then, {applied(store)} now"
                        ) from exc
                    recoveries.append((type(service).__name__, time.monotonic() - began))
                writer.join(300)
                assert not writer.failed, writer.failed[:3]
                wait_until(
                    lambda: applied(store) == writer.acked, 180, "every acknowledged event applied"
                )
                assert worker.proc.poll() is None, "the worker died on the way"
                assert worker.terminate() == 0
                stats = store.stats()
        finally:
            kafka.stop()
    print("recovered after", ", ".join(f"{name} {seconds:.1f}s" for name, seconds in recoveries))
    assert writer.acked == EVENTS
    assert stats.applied_events == EVENTS
    assert stats.item_events_sum == EVENTS
    assert sum(stats.partition_offsets.values()) == EVENTS
