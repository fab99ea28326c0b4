"""The trainer worker: a consumer-group member that runs micro-batches through the processor.

Lifecycle: ``start()`` connects (retrying with backoff while Redis or the broker is
down), creates missing topics, loads the stored state and joins the group; ``run(stop)``
loops until ``stop`` is set, then finishes the current batch, commits and returns;
``close()`` releases everything. Partition offsets live in Redis with the state: on
assignment the worker seeks to them, so each event changes the state once.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, TypeVar

import orjson
from kafka import ConsumerRebalanceListener, KafkaConsumer, OffsetAndMetadata, TopicPartition
from kafka.errors import (
    BrokerNotAvailableError,
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
)
from prometheus_client import CollectorRegistry, start_http_server

from stream_rec.config import Settings
from stream_rec.faults import crash_point
from stream_rec.metrics import WorkerMetrics
from stream_rec.model import HybridModel
from stream_rec.store import RedisStore, StateStore, StoreFenced, StoreUnavailable
from stream_rec.stream.kafka_io import (
    KafkaSink,
    ensure_topics,
    make_admin,
    make_consumer,
    make_producer,
)
from stream_rec.stream.ledger import partition_key
from stream_rec.stream.processor import BatchProcessor, OutputTopics
from stream_rec.stream.records import SourceRecord
from stream_rec.stream.retry import Stopped, with_backoff
from stream_rec.stream.snapshot import snapshot

log = logging.getLogger(__name__)
_T = TypeVar("_T")

_IDLE_POLL_SECONDS = 0.5


class TrainerWorker:
    """Consumes the events topic and keeps the model, its state and the lists current."""

    def __init__(
        self,
        settings: Settings,
        registry: CollectorRegistry | None = None,
        store: StateStore | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry if registry is not None else CollectorRegistry()
        self.metrics = WorkerMetrics(self.registry)
        self.stop_event = threading.Event()
        self._store = store if store is not None else RedisStore.from_settings(settings.redis)
        self._consumer: KafkaConsumer | None = None
        self._sink: KafkaSink | None = None
        self._processor: BatchProcessor | None = None
        self._http: Any = None
        self._pending: list[SourceRecord] = []
        self._committed: dict[TopicPartition, OffsetAndMetadata] = {}
        self._next_lag = 0.0
        self._next_snapshot = time.monotonic() + settings.metrics.snapshot_seconds
        self._next_commit = 0.0
        self.name = settings.worker.instance_id or f"{socket.gethostname()}:{os.getpid()}"
        self.metrics_address: str | None = None

    def start(self) -> None:
        """Connect, create missing topics, restore state and join the consumer group."""
        settings = self.settings
        worker = settings.worker
        model = HybridModel(settings.model)
        model.warmup()
        self._retry(
            self._store.start,
            (StoreUnavailable,),
            f"connecting to Redis at {settings.redis.redacted_url()}",
        )
        admin = self._retry(
            lambda: make_admin(settings.kafka),
            (KafkaError,),
            "connecting to Kafka",
        )
        try:
            self._retry(
                lambda: ensure_topics(admin, settings.topics), (KafkaError,), "creating topics"
            )
        finally:
            admin.close()
        self._sink = KafkaSink(make_producer(settings.kafka, settings.topics))
        self._processor = BatchProcessor(
            model,
            self._store,
            self._sink,
            OutputTopics(
                settings.topics.recommendations,
                settings.topics.dead_letter,
                settings.topics.profiles,
            ),
            self.metrics,
            max_event_bytes=worker.max_event_bytes,
            model_name=worker.model_name,
            stop=self.stop_event,
            retry_initial=worker.retry_initial_seconds,
            retry_max=worker.retry_max_seconds,
            dedup_window=worker.dedup_window,
            list_ttl_seconds=worker.list_ttl_seconds,
            shared_refresh_seconds=worker.shared_refresh_seconds,
        )
        # The state is loaded when partitions are assigned (the model is in sync with no
        # generation yet): loaded here as well, a worker joining a busy group loaded it
        # twice, the second time because the others had committed meanwhile.
        self._processor.check_store()
        consumer = self._retry(
            lambda: make_consumer(settings.kafka, worker, settings.topics),
            (KafkaError,),
            "joining the consumer group",
        )
        consumer.subscribe(
            [settings.topics.events, settings.topics.profiles], listener=_SeekToStoredOffsets(self)
        )
        self._consumer = consumer
        if settings.metrics.port:
            self._http, _ = start_http_server(
                settings.metrics.port, addr=settings.metrics.host, registry=self.registry
            )
            self.metrics_address = f"http://{settings.metrics.host}:{settings.metrics.port}/metrics"
            log.info("metrics at %s", self.metrics_address)

    def run(self) -> None:
        """Poll and process micro-batches until :attr:`stop_event` is set."""
        consumer = self._require(self._consumer)
        worker = self.settings.worker
        deadline = 0.0
        while not self.stop_event.is_set():
            now = time.monotonic()
            self._periodic(now)
            wait = _IDLE_POLL_SECONDS if not self._pending else max(0.0, deadline - now)
            polling = time.monotonic()
            # A broker restarting can fail the coordinator lookup inside poll: wait it out
            # (and if told to stop meanwhile, still process and commit what is in hand).
            try:
                polled = self._retry(
                    partial(
                        consumer.poll,
                        timeout_ms=int(wait * 1000),
                        max_records=max(1, worker.batch_max_events - len(self._pending)),
                    ),
                    (KafkaConnectionError, KafkaTimeoutError, BrokerNotAvailableError),
                    "polling the brokers",
                )
            except Stopped:
                break
            self.metrics.stage_seconds["poll"].inc(time.monotonic() - polling)
            if not polled and not self._pending:
                self._commit()  # idle: nothing is gained by waiting
            if polled and not self._pending:
                deadline = time.monotonic() + worker.batch_max_seconds
            for records in polled.values():
                self._pending.extend(records)
            if self._pending and (
                len(self._pending) >= worker.batch_max_events or time.monotonic() >= deadline
            ):
                self._process_pending()
        if self._pending:
            self._process_pending()
        self._commit()

    def _periodic(self, now: float) -> None:
        """The consumer lag and the metrics snapshot, each at its own interval."""
        metrics = self.settings.metrics
        if now >= self._next_lag:
            self._next_lag = now + metrics.lag_interval_seconds
            self._update_lag()
        if metrics.snapshot_seconds and now >= self._next_snapshot:
            self._next_snapshot = now + metrics.snapshot_seconds
            sink = self._require(self._sink)
            value = orjson.dumps(snapshot(self.registry, self.name))
            sink.send(self.settings.topics.metrics, self.name.encode(), value)
            self.metrics.snapshots.inc()

    def _update_lag(self) -> None:
        """End offset minus the next offset to apply, for each assigned partition."""
        consumer = self._require(self._consumer)
        assigned = list(consumer.assignment())
        if not assigned:
            return
        try:
            ends = consumer.end_offsets(assigned, timeout_ms=2_000)
        except KafkaError as exc:
            log.debug("reading end offsets: %s", exc)
            return
        applied = self._require(self._processor).ledger.next_offsets
        for tp, end in ends.items():
            done = applied.get(partition_key(tp.topic, tp.partition), 0)
            self.metrics.set_lag(tp.topic, tp.partition, max(0, int(end) - done))

    def close(self) -> None:
        """Commit the last offsets to Kafka and release every client; safe to call twice."""
        if self._consumer is not None:
            try:
                if self._committed:  # the async commits may still be in flight: make sure
                    self._consumer.commit(self._committed)
                self._consumer.close(autocommit=False)
            except KafkaError as exc:
                log.warning("closing the consumer: %s", exc)
            self._consumer = None
        if self._sink is not None:
            self._sink.close()
            self._sink = None
        self._store.close()
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None

    def _process_pending(self) -> None:
        """Process the polled batch (its lists are published when this returns), and
        commit its state if the commit interval has passed since the last commit."""
        batch, self._pending = self._pending, []
        self._require(self._processor).process(batch, commit=False)
        if time.monotonic() >= self._next_commit:
            self._commit()

    def _commit(self) -> None:
        """Write the state of the batches processed since the last commit (fenced)."""
        self._next_commit = time.monotonic() + self.settings.worker.commit_interval_seconds
        try:
            next_offsets = self._require(self._processor).commit()
        except StoreFenced as exc:
            self._fenced(exc)
            return
        if not next_offsets:
            return
        crash_point("after-commit")
        offsets = {
            TopicPartition(topic, partition): OffsetAndMetadata(nxt, "", -1)
            for (topic, partition), nxt in next_offsets.items()
        }
        # Redis holds the authoritative offsets; this commit only keeps Kafka's lag current.
        self._require(self._consumer).commit_async(offsets, callback=_log_commit_failure)
        self._committed.update(offsets)

    def _fenced(self, exc: StoreFenced) -> None:
        """Another worker claimed a partition of the batch: nothing was written. This
        worker's model holds steps the store does not, so it reloads the stored state, and
        it stops reading the fenced partitions until the group assigns them again."""
        self.metrics.fenced.inc()
        log.warning("commit fenced (%s): reloading the stored state", exc)
        consumer = self._require(self._consumer)
        fenced = [
            tp
            for tp in consumer.assignment()
            if partition_key(tp.topic, tp.partition) in exc.partitions
        ]
        if fenced:
            consumer.pause(*fenced)
        self._pending = []
        processor = self._require(self._processor)
        processor.revoke(exc.partitions)
        processor.restore()
        for tp in consumer.assignment():
            nxt = processor.ledger.next_offsets.get(partition_key(tp.topic, tp.partition))
            if nxt is not None:
                consumer.seek(tp, nxt)

    def drop_pending(self, partitions: Sequence[TopicPartition]) -> None:
        """Partitions are revoked: commit what was applied (so their next owner starts
        where this worker stopped) and forget their unapplied records (the next owner
        reads them)."""
        self._commit()
        revoked = {(tp.topic, tp.partition) for tp in partitions}
        self._pending = [r for r in self._pending if (r.topic, r.partition) not in revoked]
        for tp in partitions:
            self._committed.pop(tp, None)
            self.metrics.forget_lag(tp.topic, tp.partition)
        self._require(self._processor).revoke(
            [partition_key(tp.topic, tp.partition) for tp in partitions]
        )

    def seek_to_stored(self, partitions: Sequence[TopicPartition]) -> None:
        """Claim each assigned partition (fencing its previous owner) and position it at
        the next offset stored with the state."""
        consumer = self._require(self._consumer)
        keys = {partition_key(tp.topic, tp.partition): tp for tp in partitions}
        stored = self._require(self._processor).assign(list(keys))
        for key, tp in keys.items():
            if key in stored:
                consumer.seek(tp, stored[key])
        consumer.resume(*partitions)
        log.info("assigned %s", ", ".join(keys))

    def _retry(
        self, call: Callable[[], _T], retriable: tuple[type[BaseException], ...], what: str
    ) -> _T:
        worker = self.settings.worker
        return with_backoff(
            call,
            retriable,
            what=what,
            initial=worker.retry_initial_seconds,
            maximum=worker.retry_max_seconds,
            stop=self.stop_event,
        )

    @staticmethod
    def _require(value: _T | None) -> _T:
        if value is None:
            raise RuntimeError("TrainerWorker.start() has not been called")
        return value


class _SeekToStoredOffsets(ConsumerRebalanceListener):  # type: ignore[misc]  # untyped base
    def __init__(self, worker: TrainerWorker) -> None:
        self._worker = worker

    def on_partitions_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        self._worker.drop_pending(revoked)

    def on_partitions_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        self._worker.seek_to_stored(assigned)


def _log_commit_failure(offsets: Any, response: Any) -> None:
    if isinstance(response, Exception):
        log.warning("Kafka offset commit failed (Redis offsets stay authoritative): %s", response)
