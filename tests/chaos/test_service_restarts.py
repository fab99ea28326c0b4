"""Restart the Kafka broker 3 times and Redis (AOF) 3 times mid-stream: the worker
recovers with no operator action and the counters come out exact.

The stream (500 events/s) runs until the last restart has been recovered from, so it
outlasts the restarts however long they take; the services restart 2 s apart, each
restart waiting until the worker applies events again; the time to that is printed. The
counters must then equal the events acknowledged to the writer, at least MIN_EVENTS.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from stream_rec.config import Settings
from stream_rec.evaluation.synthetic import SyntheticWorld
from stream_rec.services import LocalKafka, LocalRedis
from stream_rec.stream.kafka_io import make_producer
from tests.chaos.support import WorkerProcess, applied, wait_until, worker_env
from tests.integration.support import create_topics, open_store, settings_for

pytestmark = pytest.mark.chaos

MIN_EVENTS = 20_000


class _Writer(threading.Thread):
    """Writes events at a steady rate until stopped; counts the sent and acknowledged ones."""

    def __init__(self, settings: Settings, events: Iterator[dict[str, Any]], rate: float) -> None:
        super().__init__(daemon=True)
        self._producer = make_producer(
            settings.kafka, settings.topics, retries=2**31 - 1, delivery_timeout_ms=300_000
        )
        self._topic = settings.topics.events
        self._events = events
        self._rate = rate
        self.sent = 0
        self.acked = 0
        self._halt = threading.Event()
        self.failed: list[BaseException] = []
        self._lock = threading.Lock()

    def _ok(self, _metadata: object) -> None:
        with self._lock:
            self.acked += 1

    def stop(self) -> None:
        self._halt.set()

    def run(self) -> None:
        started = time.monotonic()
        for n, event in enumerate(self._events):
            delay = started + n / self._rate - time.monotonic()
            if self._halt.wait(max(delay, 0.0)):
                break
            future = self._producer.send(
                self._topic, key=str(event["user_id"]).encode(), value=orjson.dumps(event)
            )
            future.add_callback(self._ok)
            future.add_errback(self.failed.append)
            self.sent += 1
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
            events = SyntheticWorld.create(n_users=800, n_items=600, seed=4).events(10**7)
            worker = WorkerProcess(worker_env(settings), tmp_path / "worker.log")
            writer = _Writer(settings, events, rate=500)
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
                wait_until(lambda: writer.sent >= MIN_EVENTS, 120, f"{MIN_EVENTS} events sent")
                writer.stop()
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
    assert writer.acked == writer.sent >= MIN_EVENTS
    assert stats.applied_events == writer.acked
    assert stats.item_events_sum == writer.acked
    assert sum(stats.partition_offsets.values()) == writer.acked
