"""Session fixtures: one real Kafka broker and one real Redis server per pytest run.

They start on 127.0.0.1 and free ports the first time a test asks for them (unit tests
that do not ask start nothing), and stop by PID at the end of the session.
``STREAM_REC_KAFKA_BOOTSTRAP`` / ``STREAM_REC_REDIS_URL`` point them at running servers
instead. A service that cannot be had fails the tests that need it, loudly: nothing skips.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from stream_rec.services import LocalKafka, LocalRedis


@dataclass(frozen=True)
class KafkaServer:
    bootstrap: str
    flavor: str
    handle: LocalKafka | None


@dataclass(frozen=True)
class RedisServer:
    url: str
    handle: LocalRedis | None


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


@pytest.fixture
def unique(request: pytest.FixtureRequest) -> str:
    """A short name unique to this test: prefix of its topics, group and Redis keys."""
    name = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40]
    return f"t-{name}-{uuid.uuid4().hex[:8]}"
