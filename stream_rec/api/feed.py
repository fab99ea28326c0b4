"""The server's reader of the recommendations and metrics topics (one background thread).

A kafka-python consumer without a group (it commits nothing and joins nothing) is assigned
every partition of both topics: the recommendations topic from its beginning (compacted:
the latest list per user), the metrics topic from :data:`~stream_rec.api.live.HISTORY_SECONDS`
ago (the panel's chart). Each poll's new lists go to the cache and, through the event loop,
to the page's streams. Every :data:`CHECK_SECONDS` the thread reads the end offsets: a
real round trip, which tells the health check that the broker answers, and how far the
cache is behind the topic.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import orjson
from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from stream_rec.api.lists import CachedList, ListCache
from stream_rec.api.live import HISTORY_SECONDS, PanelHistory
from stream_rec.config import KafkaSettings, TopicSettings

log = logging.getLogger(__name__)

CHECK_SECONDS = 2.0
"""How often the end offsets are read (the broker's health and the cache's lag)."""

_POLL_MS = 100
_PARTITIONS_TIMEOUT_S = 30.0

OnLists = Callable[[list[CachedList]], None]
OnPoint = Callable[[dict[str, Any]], None]


class TopicFeed:
    """Keeps ``cache`` and ``panel`` current from the topics; hands news to the callbacks.

    ``start()`` creates the consumer, assigns and positions the partitions, and starts the
    thread; ``ready`` turns true once the lists up to the end offsets seen at start are
    read; ``stop()`` ends the thread and closes the consumer.
    """

    def __init__(
        self,
        kafka: KafkaSettings,
        topics: TopicSettings,
        cache: ListCache,
        panel: PanelHistory,
        on_delivery: Callable[[float], None] | None = None,
        on_ready: Callable[[], None] | None = None,
    ) -> None:
        self._kafka = kafka
        self._topics = topics
        self.cache = cache
        self.panel = panel
        self._on_delivery = on_delivery or (lambda _seconds: None)
        self._on_ready = on_ready or (lambda: None)
        self._listeners: list[tuple[asyncio.AbstractEventLoop, OnLists, OnPoint]] = []
        self._consumer: KafkaConsumer | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._start_ends: dict[TopicPartition, int] = {}
        self._lists_partitions: list[TopicPartition] = []
        self.broker_checked_at: float | None = None
        """Unix time of the last successful round trip to the broker."""
        self.lag: int | None = None
        """Lists published but not yet read by this server, at the last check."""

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def listen(self, loop: asyncio.AbstractEventLoop, on_lists: OnLists, on_point: OnPoint) -> None:
        """Call ``on_lists``/``on_point`` on ``loop`` (thread-safe) for every new list/point."""
        self._listeners.append((loop, on_lists, on_point))

    def start(self) -> None:
        consumer = KafkaConsumer(
            **self._kafka.client_options(),
            group_id=None,
            enable_auto_commit=False,
            fetch_max_wait_ms=100,
        )
        self._consumer = consumer
        lists = self._partitions(consumer, self._topics.recommendations)
        metrics = self._partitions(consumer, self._topics.metrics)
        consumer.assign(lists + metrics)
        consumer.seek_to_beginning(*lists)
        since = int((time.time() - HISTORY_SECONDS) * 1000)
        starts = consumer.offsets_for_times(dict.fromkeys(metrics, since))
        ends = consumer.end_offsets(lists + metrics)
        for tp in metrics:
            found = starts.get(tp)
            consumer.seek(tp, found.offset if found is not None else ends[tp])
        self._lists_partitions = lists
        self._start_ends = {tp: ends[tp] for tp in lists}
        self.broker_checked_at = time.time()
        self._thread = threading.Thread(target=self._run, name="api-topic-feed", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
        if self._consumer is not None:
            self._consumer.close(autocommit=False)
            self._consumer = None

    def _partitions(self, consumer: KafkaConsumer, topic: str) -> list[TopicPartition]:
        deadline = time.monotonic() + _PARTITIONS_TIMEOUT_S
        while True:
            partitions = consumer.partitions_for_topic(topic)
            if partitions:
                return [TopicPartition(topic, p) for p in sorted(partitions)]
            if time.monotonic() > deadline:
                raise KafkaError(f"topic {topic} has no partitions (does it exist?)")
            time.sleep(0.2)

    def _run(self) -> None:
        try:
            self._loop()
        except Exception:  # the health check turns 503 once the broker check is stale
            log.exception("the topic feed stopped; lists now come from Redis only")
            self._ready.clear()

    def _loop(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        next_check = 0.0
        while not self._stop.is_set():
            try:
                polled = consumer.poll(timeout_ms=_POLL_MS)
            except KafkaError as exc:
                log.warning("reading the topics: %s", exc)
                self._stop.wait(1.0)
                continue
            if polled:
                self._take(polled)
            now = time.monotonic()
            if now >= next_check or not self._ready.is_set():
                next_check = now + CHECK_SECONDS
                self._check(consumer)

    def _take(self, polled: dict[TopicPartition, list[Any]]) -> None:
        fresh: list[CachedList] = []
        points: list[dict[str, Any]] = []
        now = time.time()
        for tp, records in polled.items():
            if tp.topic == self._topics.recommendations:
                for record in records:
                    entry = CachedList.parse(record.value) if record.value else None
                    if entry is not None and self.cache.offer(entry):
                        fresh.append(entry)
                        if self._ready.is_set():
                            self._on_delivery(max(0.0, now - entry.generated_at))
            else:
                for record in records:
                    try:
                        snapshot = orjson.loads(record.value)
                    except (orjson.JSONDecodeError, TypeError):
                        continue
                    point = self.panel.offer(snapshot) if isinstance(snapshot, dict) else None
                    if point is not None:
                        points.append(point)
        for loop, on_lists, on_point in self._listeners:
            if fresh:
                _call_soon(loop, on_lists, fresh)
            for point in points:
                _call_soon(loop, on_point, point)

    def _check(self, consumer: KafkaConsumer) -> None:
        try:
            ends = consumer.end_offsets(self._lists_partitions, timeout_ms=1_000)
        except KafkaError as exc:
            log.debug("reading end offsets: %s", exc)
            return
        self.broker_checked_at = time.time()
        positions = {tp: consumer.position(tp) for tp in self._lists_partitions}
        self.lag = sum(max(0, int(ends[tp]) - positions[tp]) for tp in self._lists_partitions)
        if not self._ready.is_set() and all(
            positions[tp] >= end for tp, end in self._start_ends.items()
        ):
            self._ready.set()
            log.info("lists cache ready: %d lists read from the topic", len(self.cache))
            self._on_ready()


def _call_soon(loop: asyncio.AbstractEventLoop, fn: Callable[[Any], None], arg: Any) -> None:
    with contextlib.suppress(RuntimeError):  # a closed loop: the server is stopping
        loop.call_soon_threadsafe(fn, arg)
