"""The local Redis Cluster on real servers: keys on every node, one hash tag one transaction,
and ``stop()`` (or a failed start) leaves no server behind."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.exceptions import CrossSlotTransactionError

from stream_rec.services import LocalRedisCluster, ServiceError
from stream_rec.services.local_redis_cluster import cluster_info, connected_masters
from tests.integration.support import process_alive

pytestmark = pytest.mark.integration


@pytest.fixture
def client(redis_cluster: Any) -> Iterator[redis.RedisCluster]:
    cluster_client = redis_cluster.client()
    try:
        yield cluster_client
    finally:
        cluster_client.close()


def _primaries_by_slot(client: redis.RedisCluster) -> dict[int, tuple[str, int]]:
    """slot -> (host, port) of its primary, from the servers' CLUSTER SLOTS."""
    owners: dict[int, tuple[str, int]] = {}
    for (first, last), node in client.cluster_slots().items():
        host, port = node["primary"]
        owners.update({slot: (host, int(port)) for slot in range(first, last + 1)})
    return owners


def _listens(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def test_a_thousand_keys_land_on_every_node(client: redis.RedisCluster, unique: str) -> None:
    keys = [f"{unique}:{i}" for i in range(1000)]
    pipe = client.pipeline(transaction=False)
    for i, key in enumerate(keys):
        pipe.set(key, i)
    assert all(pipe.execute())
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.get(key)
    assert pipe.execute() == [str(i).encode() for i in range(1000)]

    owners = _primaries_by_slot(client)
    assert len(owners) == 16384
    by_node: dict[tuple[str, int], list[str]] = {node: [] for node in set(owners.values())}
    for key in keys:
        slot = client.cluster_keyslot(key)  # the server's CLUSTER KEYSLOT
        assert slot == client.keyslot(key)
        by_node[owners[slot]].append(key)
    assert all(by_node.values()), {node: len(held) for node, held in by_node.items()}
    for (host, port), held in by_node.items():  # each key is really on its node
        with redis.Redis(host=host, port=port) as node, node.pipeline(transaction=False) as get:
            for key in held:  # one GET each: a node refuses MGET across slots
                get.get(key)
            assert get.execute() == [key.rsplit(":", 1)[1].encode() for key in held]
    client.delete(*keys)


def test_one_hash_tag_is_one_slot_and_takes_a_transaction(
    client: redis.RedisCluster, unique: str
) -> None:
    keys = [f"{{p0}}:{unique}:{name}" for name in ("a", "b", "c")]
    assert {client.cluster_keyslot(key) for key in keys} == {client.cluster_keyslot("p0")}

    with client.pipeline(transaction=True) as pipe:
        pipe.set(keys[0], "one").incrby(keys[1], 5).rpush(keys[2], "x", "y").get(keys[0])
        # redis-py's cluster transactions hand SET's reply back unparsed: b"OK", not True
        assert pipe.execute() == [b"OK", 5, 2, b"one"]
    assert client.lrange(keys[2], 0, -1) == [b"x", b"y"]

    other = f"{{p1}}:{unique}:a"
    assert client.cluster_keyslot(other) != client.cluster_keyslot(keys[0])
    with client.pipeline(transaction=True) as pipe:
        pipe.set(keys[0], "two").set(other, "two")
        with pytest.raises(CrossSlotTransactionError):
            pipe.execute()
    assert client.get(keys[0]) == b"one"
    client.delete(*keys)


def test_three_nodes_start_and_stop_leaves_no_process(tmp_path: Path) -> None:
    cluster = LocalRedisCluster(workdir=tmp_path / "cluster").start()
    try:
        pids = cluster.pids
        assert len(cluster.nodes) == 3
        assert len(set(pids)) == 3
        for host, port in cluster.nodes:
            with redis.Redis(host=host, port=port) as node:
                info = cluster_info(node)
                assert (info["cluster_state"], info["cluster_known_nodes"]) == ("ok", "3")
                assert connected_masters(node) == 3
        assert cluster.url == f"redis+cluster://127.0.0.1:{cluster.nodes[0][1]}"
        with cluster.client() as client:
            assert len(client.get_primaries()) == 3
    finally:
        cluster.stop()
    assert cluster.pids == []
    assert [pid for pid in pids if process_alive(pid)] == []
    assert [port for _, port in cluster.nodes if _listens(port)] == []
    assert (tmp_path / "cluster").is_dir()  # a given workdir is left in place


def test_a_start_that_times_out_stops_every_node() -> None:
    """Redis declares a new cluster ok after 2 s at the earliest, so 0.5 s must fail."""
    cluster = LocalRedisCluster()
    with pytest.raises(ServiceError, match=r"after 0\.5s"):
        cluster.start(timeout=0.5)
    assert cluster.pids == []
    assert [port for _, port in cluster.nodes if _listens(port)] == []
    assert not cluster.workdir.exists()
