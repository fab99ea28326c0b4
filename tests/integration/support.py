"""Helpers for tests against the real broker and Redis: settings, a worker, topic I/O."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import orjson
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from stream_rec.config import (
    KafkaSettings,
    MetricsSettings,
    RedisSettings,
    Settings,
    TopicSettings,
    WorkerSettings,
)
from stream_rec.store import RedisStore
from stream_rec.stream.kafka_io import ensure_topics, make_admin, make_producer
from stream_rec.stream.worker import TrainerWorker


def process_alive(pid: int) -> bool:
    """Whether a process with this PID still exists (signal 0 probes without killing)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def settings_for(
    kafka_bootstrap: str, redis_url: str, name: str, flavor: str, **groups: Any
) -> Settings:
    """Settings whose topics, group and key prefix all carry ``name``."""
    fast_group = (
        {"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000} if flavor == "tansu" else {}
    )
    return Settings(
        kafka=KafkaSettings(bootstrap_servers=kafka_bootstrap, **fast_group),
        redis=RedisSettings(url=redis_url, key_prefix=name),
        topics=TopicSettings(
            events=f"{name}.events",
            profiles=f"{name}.profiles",
            recommendations=f"{name}.recommendations",
            metrics=f"{name}.metrics",
            dead_letter=f"{name}.dead-letter",
            partitions=groups.pop("partitions", 3),
        ),
        worker=WorkerSettings(
            group_id=f"{name}-group", batch_max_seconds=0.05, **groups.pop("worker", {})
        ),
        metrics=MetricsSettings(port=groups.pop("metrics_port", 0)),
        **groups,
    )


@contextmanager
def running_worker(settings: Settings) -> Iterator[TrainerWorker]:
    """A started worker looping in a thread; stopped (batch finished, committed) on exit."""
    worker = TrainerWorker(settings)
    worker.start()
    failure: list[BaseException] = []

    def loop() -> None:
        try:
            worker.run()
        except BaseException as exc:  # surfaced in the test below
            failure.append(exc)

    thread = threading.Thread(target=loop, name="test-worker", daemon=True)
    thread.start()
    try:
        yield worker
    finally:
        worker.stop_event.set()
        thread.join(60)
        worker.close()
    assert not thread.is_alive(), "the worker did not stop within 60 s"
    if failure:
        raise failure[0]


def create_topics(settings: Settings) -> None:
    admin = make_admin(settings.kafka)
    try:
        ensure_topics(admin, settings.topics)
    finally:
        admin.close()


def produce_events(
    settings: Settings, events: Iterable[dict[str, Any] | bytes], topic: str | None = None
) -> int:
    """Send events (dicts as JSON, bytes as they are) keyed by user id; wait for acks.

    The topics are created first (with stream-rec's partitions and configs), as in a real
    deployment: the broker would otherwise auto-create them with one partition.
    """
    create_topics(settings)
    producer: KafkaProducer = make_producer(settings.kafka, settings.topics)
    count = 0
    try:
        for event in events:
            if isinstance(event, bytes):
                producer.send(topic or settings.topics.events, key=b"raw", value=event)
            else:
                producer.send(
                    topic or settings.topics.events,
                    key=str(event.get("user_id", "none")).encode(),
                    value=orjson.dumps(event),
                )
            count += 1
        producer.flush()
    finally:
        producer.close()
    return count


def read_topic(settings: Settings, topic: str, timeout: float = 60.0) -> list[Any]:
    """Every record of ``topic``, from the beginning to its end offsets as of now."""
    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka.bootstrap_servers.split(","), enable_auto_commit=False
    )
    try:
        deadline = time.monotonic() + timeout
        partitions = consumer.partitions_for_topic(topic)
        while not partitions and time.monotonic() < deadline:
            time.sleep(0.2)
            partitions = consumer.partitions_for_topic(topic)
        assert partitions, f"topic {topic} does not exist"
        assignment = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(assignment)
        consumer.seek_to_beginning(*assignment)
        end = consumer.end_offsets(assignment)
        records: list[Any] = []
        while any(consumer.position(tp) < end[tp] for tp in assignment):
            assert time.monotonic() < deadline, f"reading {topic} timed out"
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
        return records
    finally:
        consumer.close()


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@contextmanager
def open_store(settings: Settings) -> Iterator[RedisStore]:
    store = RedisStore.from_settings(settings.redis)
    store.start()
    try:
        yield store
    finally:
        store.close()
