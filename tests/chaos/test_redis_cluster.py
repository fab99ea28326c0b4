"""The same replay on a local 3-node Redis Cluster as on one Redis: the same counters,
user by user and item by item.

On one Redis, one worker takes the replay. On the cluster, a worker is killed (as by
kill -9) right after the transaction of its third commit, before that commit's user
shards are written; then two workers in one group share the rest. The users must come
out on every node, and every counter equal to the events of its user or item.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import redis

from stream_rec.config import RedisSettings, Settings
from stream_rec.evaluation.synthetic import SyntheticWorld
from stream_rec.store import RedisStore
from tests.chaos.support import WorkerProcess, applied, stored_model, wait_until, worker_env
from tests.integration.support import open_store, produce_events, settings_for

pytestmark = pytest.mark.chaos

EVENTS = 30_000


def _counters(store: RedisStore, settings: Settings) -> tuple[dict[str, int], dict[str, int]]:
    """Each user's and each item's applied-event counter, as stored."""
    model = stored_model(store, settings.model)
    users, items = model.users, model.items
    return (
        {u: int(users.counts[r]) for r, u in enumerate(users.ids)},
        {i: int(items.counts[r]) for r, i in enumerate(items.ids)},
    )


def _user_keys_by_node(client: redis.RedisCluster, prefix: str) -> list[int]:
    """How many keys of the prefix's user shards each primary holds."""
    try:
        return [
            sum(1 for _ in client.get_redis_connection(node).scan_iter(f"{{{prefix}:u*"))
            for node in client.get_primaries()
        ]
    finally:
        client.close()


def test_a_cluster_replay_counts_what_one_redis_counts(
    kafka_server: Any, redis_server: Any, redis_cluster: Any, unique: str, tmp_path: Path
) -> None:
    single = settings_for(
        kafka_server.bootstrap, redis_server.url, unique, kafka_server.flavor, partitions=2
    )
    on_cluster = single.model_copy(
        update={
            "redis": RedisSettings(url=redis_cluster.url, key_prefix=f"{unique}-c"),
            "worker": single.worker.model_copy(update={"group_id": f"{unique}-cluster"}),
        }
    )
    events = list(SyntheticWorld.create(n_users=1_500, n_items=800, seed=23).events(EVENTS))
    produce_events(single, events)
    expected = (
        dict(Counter(str(e["user_id"]) for e in events)),
        dict(Counter(str(e["item_id"]) for e in events)),
    )
    small_batches = {  # a commit every batch of at most 1,000 events
        "STREAM_REC_WORKER__BATCH_MAX_EVENTS": "1000",
        "STREAM_REC_WORKER__COMMIT_INTERVAL_SECONDS": "0",
    }

    with open_store(single) as store:
        worker = WorkerProcess(worker_env(single), tmp_path / "single.log")
        wait_until(lambda: applied(store) == EVENTS, 300, "the replay on one Redis", poll=0.2)
        assert worker.terminate() == 0
        on_one = _counters(store, single)

    started = time.monotonic()
    with open_store(on_cluster) as store:
        log = tmp_path / "cluster.log"
        crashing = WorkerProcess(
            worker_env(on_cluster, STREAM_REC_CRASH_AT="after-exec:3", **small_batches), log
        )
        wait_until(lambda: crashing.proc.poll() is not None, 120, "the crash after EXEC")
        assert crashing.proc.returncode == 137, log.read_text()[-2_000:]
        assert applied(store) < EVENTS, "the crash came too late to test anything"
        # Two workers share the rest: the first to load applies what the crash left.
        other = WorkerProcess(worker_env(on_cluster, **small_batches), log)
        restarted = WorkerProcess(worker_env(on_cluster, **small_batches), log)
        wait_until(lambda: applied(store) == EVENTS, 300, "the replay on the cluster", poll=0.2)
        assert other.terminate() == 0
        assert restarted.terminate() == 0
        stats = store.stats()
        on_cluster_counters = _counters(store, on_cluster)
        keys_by_node = _user_keys_by_node(redis_cluster.client(), f"{unique}-c")
    print(
        f"cluster replay: {EVENTS} events, 1 crash after EXEC, then 2 workers, "
        f"{time.monotonic() - started:.0f} s; user keys by node {keys_by_node}"
    )
    assert on_one == expected
    assert on_cluster_counters == expected  # nothing lost, nothing twice, user by user
    assert stats.applied_events == stats.item_events_sum == EVENTS
    assert sum(stats.partition_offsets.values()) == EVENTS
    assert all(keys_by_node), keys_by_node
