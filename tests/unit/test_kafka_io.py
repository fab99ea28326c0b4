"""The producer's partitioner places keyed records where kafka-python's default does."""

from __future__ import annotations

import random

import pytest
from kafka.partitioner.default import DefaultPartitioner

from stream_rec.stream.kafka_io import KeyedPartitioner


class _Cluster:
    """The three calls a partitioner makes of kafka-python's ClusterMetadata."""

    def __init__(self, partitions: dict[str, set[int]]) -> None:
        self._partitions = partitions

    def topics(self) -> set[str]:
        return set(self._partitions)

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        return self._partitions.get(topic)

    def available_partitions_for_topic(self, topic: str) -> set[int] | None:
        return self._partitions.get(topic)


@pytest.mark.parametrize("count", [1, 2, 3, 12, 50])
def test_keyed_records_go_where_the_default_partitioner_puts_them(count: int) -> None:
    rng = random.Random(count)
    cluster = _Cluster({"recs": set(range(count)), "odd": {2, 5, 9}})
    ours, default = KeyedPartitioner(), DefaultPartitioner()
    keys = [f"u{rng.randrange(10**9)}".encode() for _ in range(500)] + [b"", "ü".encode()]
    for topic in ("recs", "odd"):
        for key in keys * 2:  # the second time from the remembered hash
            assert ours.partition(topic, key, key, b"v", b"v", cluster) == default.partition(
                topic, key, key, b"v", b"v", cluster
            )


def test_records_without_a_key_or_topic_are_placed_as_by_the_default() -> None:
    cluster = _Cluster({"recs": {0, 1, 2}})
    assert KeyedPartitioner().partition("recs", None, None, b"v", b"v", cluster) in {0, 1, 2}
    with pytest.raises(ValueError, match="not found"):
        KeyedPartitioner().partition("other", b"k", b"k", b"v", b"v", cluster)
