"""The worker uses topics that already exist, as they are, and creates the missing ones."""

from __future__ import annotations

import pytest
from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType

from stream_rec.config import Settings
from stream_rec.evaluation.synthetic import SyntheticWorld
from stream_rec.stream.kafka_io import ensure_topics, make_admin
from tests.integration.support import open_store, produce_events, running_worker, wait_for

pytestmark = pytest.mark.integration


def _partitions(admin: KafkaAdminClient, topic: str) -> int:
    (described,) = admin.describe_topics([topic])
    return len(described["partitions"])


def test_existing_topics_are_used_and_missing_ones_created(settings: Settings) -> None:
    admin = make_admin(settings.kafka)
    try:
        # An operator made the events topic beforehand, with 2 partitions (not the default 3).
        admin.create_topics(
            {settings.topics.events: {"num_partitions": 2, "replication_factor": 1}},
            wait_for_metadata=True,
        )
        events = list(SyntheticWorld.create(30, 40, seed=2).events(400))
        with running_worker(settings), open_store(settings) as store:
            produce_events(settings, events)
            wait_for(lambda: store.stats().applied_events == len(events), 60, "events applied")
            offsets = store.stats().partition_offsets
        topics = set(admin.list_topics())
        assert {
            settings.topics.recommendations,
            settings.topics.dead_letter,
            settings.topics.profiles,
            settings.topics.metrics,
        } <= topics
        assert _partitions(admin, settings.topics.events) == 2
        assert _partitions(admin, settings.topics.recommendations) == settings.topics.partitions
        assert set(offsets) == {f"{settings.topics.events}:0", f"{settings.topics.events}:1"}
        # Idempotent: a second call creates nothing.
        assert ensure_topics(admin, settings.topics) == []
    finally:
        admin.close()


def test_recommendations_topic_is_compacted(settings: Settings) -> None:
    admin = make_admin(settings.kafka)
    try:
        ensure_topics(admin, settings.topics)
        configs = admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, settings.topics.recommendations)]
        )
        described = configs["topic"][settings.topics.recommendations]
        assert described["cleanup.policy"]["value"] == "compact"
    finally:
        admin.close()
