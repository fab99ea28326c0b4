"""The server's clients and shared state, created when the application starts.

:class:`ApiRuntime` owns the Redis store (the lists' fallback and the health check), the
producer (POSTed events and profiles), the topic feed (the lists cache and the panel's
history) and the live hub (the page's streams). :meth:`start` connects, retrying with
backoff while a service is down, as the worker does; :meth:`stop` releases everything.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaError
from prometheus_client import CollectorRegistry

from stream_rec.api.feed import TopicFeed
from stream_rec.api.lists import LatestLists, ListCache
from stream_rec.api.live import LiveHub, PanelHistory
from stream_rec.api.metrics import ApiMetrics
from stream_rec.config import Settings
from stream_rec.store import RedisStore, StoreUnavailable
from stream_rec.stream.kafka_io import ensure_topics, make_admin, make_producer
from stream_rec.stream.retry import with_backoff

log = logging.getLogger(__name__)


class ApiRuntime:
    """Everything a request handler needs; one per application."""

    def __init__(self, settings: Settings, registry: CollectorRegistry | None = None) -> None:
        self.settings = settings
        self.metrics = ApiMetrics(registry if registry is not None else CollectorRegistry())
        self.cache = ListCache(settings.http.max_cached_lists, settings.worker.list_ttl_seconds)
        self.metrics.watch_cache(lambda: len(self.cache))
        self.panel = PanelHistory()
        self.hub = LiveHub()
        self.store = RedisStore.from_settings(settings.redis)
        self.feed = TopicFeed(
            settings.kafka,
            settings.topics,
            self.cache,
            self.panel,
            on_delivery=self.metrics.delivery.observe,
            on_ready=freeze_heap,
        )
        self.lists = LatestLists(
            self.cache,
            self.store,
            lambda: self.feed.ready,
            on_read=lambda source: self.metrics.reads[source].inc(),
        )
        self._producer: KafkaProducer | None = None
        self._stopping = threading.Event()
        token = settings.http.token
        self.token = None if token is None else token.get_secret_value()

    @property
    def producer(self) -> KafkaProducer:
        if self._producer is None:
            raise RuntimeError("ApiRuntime.start() has not been called")
        return self._producer

    async def start(self) -> None:
        """Connect (in a worker thread, so the loop stays free) and start the feed."""
        await asyncio.to_thread(self._connect)
        self.feed.listen(self.hub.publish_lists, self.hub.publish_point)
        await self.feed.start()
        freeze_heap()

    async def stop(self) -> None:
        self._stopping.set()
        self.hub.close()
        self.feed.stop()
        await asyncio.to_thread(self._close)

    def _connect(self) -> None:
        settings = self.settings
        self._retry(
            self.store.start,
            (StoreUnavailable,),
            f"connecting to Redis at {settings.redis.redacted_url()}",
        )
        admin: Any = self._retry(
            lambda: make_admin(settings.kafka), (KafkaError,), "connecting to Kafka"
        )
        try:
            self._retry(
                lambda: ensure_topics(admin, settings.topics), (KafkaError,), "creating topics"
            )
        finally:
            admin.close()
        producer = make_producer(settings.kafka, settings.topics, max_block_ms=10_000)
        for topic in (settings.topics.events, settings.topics.profiles):
            producer.partitions_for(topic)  # metadata now, so that a send does not wait
        self._producer = producer

    def _close(self) -> None:
        if self._producer is not None:
            self._producer.close(timeout=5)
            self._producer = None
        self.store.close()

    def _retry(self, call: Any, retriable: tuple[type[BaseException], ...], what: str) -> Any:
        worker = self.settings.worker
        return with_backoff(
            call,
            retriable,
            what=what,
            initial=worker.retry_initial_seconds,
            maximum=worker.retry_max_seconds,
            stop=self._stopping,
        )


def freeze_heap() -> None:
    """Move every object alive now out of the garbage collector's sight.

    The server imports numpy, numba and kafka-python: ~100k long-lived objects, which a
    full collection scans each time (~55 ms here, longer on a busy machine), stalling every
    request in flight. Frozen objects are never scanned again; garbage made later is
    collected as usual. Called once the clients are up and again once the lists cache has
    read the topic.
    """
    gc.collect()
    gc.freeze()
