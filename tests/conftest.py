"""Session fixtures: one real Kafka broker, Redis server and 3-node Redis Cluster per run.

They start on 127.0.0.1 and free ports the first time a test asks for them (unit tests
that do not ask start nothing), and stop by PID at the end of the session.
``STREAM_REC_KAFKA_BOOTSTRAP`` / ``STREAM_REC_REDIS_URL`` / ``STREAM_REC_REDIS_CLUSTER_URL``
(``redis+cluster://host:port`` of any one node) point them at running servers instead.
A service that cannot be had fails the tests that need it, loudly: nothing skips.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import pytest
import redis

from stream_rec.services import LocalKafka, LocalRedis, LocalRedisCluster


@dataclass(frozen=True)
class KafkaServer:
    bootstrap: str
    flavor: str
    handle: LocalKafka | None


@dataclass(frozen=True)
class RedisServer:
    url: str
    handle: LocalRedis | None


@dataclass(frozen=True)
class RedisClusterServer:
    url: str
    handle: LocalRedisCluster | None

    def client(self) -> redis.RedisCluster:
        """A RedisCluster client on the node the ``redis+cluster://host:port`` URL names."""
        parts = urlsplit(self.url)
        assert parts.scheme == "redis+cluster", f"not a redis+cluster:// URL: {self.url}"
        return redis.RedisCluster(host=parts.hostname or "127.0.0.1", port=parts.port or 6379)


@pytest.fixture(scope="session")
def kafka_server() -> Iterator[KafkaServer]:
    external = os.environ.get("STREAM_REC_KAFKA_BOOTSTRAP")
    if external:
        yield KafkaServer(external, "external", None)
        return
    broker = LocalKafka(os.environ.get("STREAM_REC_TEST_BROKER", "auto"))
    broker.start()
    if broker.flavor != "apache":
        print(f"\nNOTE: tests run on the {broker.flavor} broker (no Java/Maven for Apache Kafka)")
    try:
        yield KafkaServer(broker.bootstrap, broker.flavor or "unknown", broker)
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    external = os.environ.get("STREAM_REC_REDIS_URL")
    if external:
        yield RedisServer(external, None)
        return
    server = LocalRedis().start()
    try:
        yield RedisServer(server.url, server)
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterServer]:
    external = os.environ.get("STREAM_REC_REDIS_CLUSTER_URL")
    if external:
        yield RedisClusterServer(external, None)
        return
    cluster = LocalRedisCluster().start()
    try:
        yield RedisClusterServer(cluster.url, cluster)
    finally:
        cluster.stop()


@pytest.fixture
def unique(request: pytest.FixtureRequest) -> str:
    """A short name unique to this test: prefix of its topics, group and Redis keys."""
    name = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40]
    return f"t-{name}-{uuid.uuid4().hex[:8]}"
