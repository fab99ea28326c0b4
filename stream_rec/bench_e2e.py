"""`stream-rec bench` end to end: real Kafka, a worker process, real Redis.

A fixed workload (named in the JSON, so runs compare over time) is pre-filled into the
events topic; a worker process (``stream-rec run``) then consumes it, publishing a list
for every touched user; then a new consumer group (with its own Redis prefix) consumes the
same events, one worker alone for the first ``second_joins_at`` of them, two once a second
joins. Measured:

- sustained events/s of one and of two workers, from the first commit to the one that
  applies the last event (the first batch's events are not counted: they start the clock),
  and the first worker's rate alone beside the pair's after the second joined;
- sustained events/s of one worker of a third group whose state is on a local 3-node
  Redis Cluster, beside the one worker on one Redis, and the keys each node holds;
- freshness at a fixed offered load: events produced at ``offered_rate`` events/s with
  ``ts`` = the send time, against the Kafka timestamp of the list published after them,
  and the worker's microseconds an event by stage during that phase;
- Redis memory per user and per item after the replay, against the raw float32 vector;
- where the worker's time went (its ``stream_rec_stage_seconds_total`` by stage);
- the online hit@10 (``quality``: prequential recall@10) from the point the second worker
  starts to the end of the replay, of the one worker and of the two on the same events
  (the pair's from both workers' hit and positive counters: each scores its own users).
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
from kafka import KafkaConsumer, TopicPartition

from stream_rec.config import Settings, WorkerSettings, load_settings
from stream_rec.evaluation.synthetic import EVENT_MIX
from stream_rec.services import LocalKafka, LocalRedis, LocalRedisCluster, free_port
from stream_rec.services.process import ChildProcess
from stream_rec.store import RedisStore
from stream_rec.store.keys import USER_SHARDS, KeySpace
from stream_rec.stream.kafka_io import ensure_topics, make_admin, make_producer

Print = Callable[[str], None]


@dataclass(frozen=True)
class Workload:
    """The fixed end-to-end workload: Zipf users in sessions over a Zipf catalog."""

    events: int = 500_000
    users: int = 100_000
    items: int = 10_000
    session_events: int = 10
    """Mean events of a session (1 + Poisson)."""
    session_seconds: float = 60.0
    """A session's events fall within this many seconds."""
    user_zipf: float = 0.8
    item_zipf: float = 1.0
    partitions: int = 2
    factors: int = 64
    offered_rate: float = 10_000.0
    """Events/s of the freshness phase."""
    freshness_seconds: float = 20.0
    batch_max_events: int = WorkerSettings().batch_max_events
    """The worker's ``WORKER__BATCH_MAX_EVENTS`` (its default)."""
    second_joins_at: float = 0.4
    """Share of the events the first of two workers applies alone before the second is
    started (its start, two state loads and the rebalance take about another quarter of
    the events here; at one half the pair had only the last fifth of the stream to show
    its rate on). Quality is compared on the stream from there, one worker against two."""
    seed: int = 1


@dataclass(frozen=True)
class EventColumns:
    users: npt.NDArray[np.int64]
    items: npt.NDArray[np.int64]
    kinds: npt.NDArray[np.int64]
    offsets: npt.NDArray[np.float64]
    """Seconds from the start of the stream."""
    fractions: npt.NDArray[np.float64]
    ratings: npt.NDArray[np.int64]


def _zipf(n: int, exponent: float, rng: np.random.Generator) -> npt.NDArray[np.float64]:
    weight = 1.0 / np.arange(1, n + 1, dtype=np.float64) ** exponent
    return np.asarray(rng.permutation(weight / weight.sum()), np.float64)


def workload_columns(w: Workload, n: int, seed: int, span_seconds: float) -> EventColumns:
    """n events of the workload in time order, spread over ``span_seconds``."""
    rng = np.random.default_rng(seed)
    lengths = 1 + rng.poisson(w.session_events - 1, n // max(w.session_events - 1, 1) + 1)
    lengths = lengths[: int(np.searchsorted(np.cumsum(lengths), n)) + 1]
    starts = np.sort(rng.uniform(0.0, max(span_seconds - w.session_seconds, 1.0), lengths.size))
    session = np.repeat(np.arange(lengths.size), lengths)[:n]
    users = rng.choice(w.users, lengths.size, p=_zipf(w.users, w.user_zipf, rng))[session]
    offsets = starts[session] + rng.uniform(0.0, w.session_seconds, n)
    order = np.argsort(offsets, kind="stable")
    kinds = rng.choice(len(EVENT_MIX), n, p=np.array(list(EVENT_MIX.values())))
    return EventColumns(
        users[order],
        rng.choice(w.items, n, p=_zipf(w.items, w.item_zipf, rng))[order],
        kinds[order],
        offsets[order],
        rng.uniform(0.0, 1.0, n),
        rng.integers(1, 6, n),
    )


_TYPES = list(EVENT_MIX)


def encode(columns: EventColumns, e: int, ts: float, tag: str) -> tuple[bytes, bytes]:
    """(key, value) of event e of ``columns`` at time ``ts``."""
    kind = _TYPES[int(columns.kinds[e])]
    user = f"u{int(columns.users[e])}"
    item = int(columns.items[e])
    event: dict[str, Any] = {
        "event_id": f"{tag}-{e}",
        "type": kind,
        "user_id": user,
        "item_id": f"i{item}",
        "ts": ts,
    }
    if kind == "watch":
        duration = 300.0 + (item * 7919) % 3300
        event["watch_seconds"] = round(duration * float(columns.fractions[e]), 1)
        event["duration_seconds"] = duration
    elif kind == "rating":
        event["rating"] = float(columns.ratings[e])
    return user.encode(), orjson.dumps(event)


def run_e2e(w: Workload, out: Print) -> dict[str, Any]:
    """The end-to-end figures of one worker on ``w`` (see the module docstring)."""
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="sr-bench-")))
        redis = stack.enter_context(LocalRedis(workdir=workdir / "redis"))
        kafka = LocalKafka("apache", workdir=workdir / "kafka")
        stack.callback(kafka.stop)
        kafka.start()
        metrics_port = free_port()
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("STREAM_REC_")},
            "STREAM_REC_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap,
            "STREAM_REC_REDIS__URL": redis.url,
            "STREAM_REC_METRICS__PORT": str(metrics_port),
            "STREAM_REC_TOPICS__PARTITIONS": str(w.partitions),
            "STREAM_REC_MODEL__FACTORS": str(w.factors),
            "STREAM_REC_WORKER__BATCH_MAX_SECONDS": "0.05",
            "STREAM_REC_WORKER__BATCH_MAX_EVENTS": str(w.batch_max_events),
        }
        settings = _settings(env)
        admin = make_admin(settings.kafka)
        try:
            ensure_topics(admin, settings.topics)
        finally:
            admin.close()
        out(f"  e2e: producing {w.events:,} events into {w.partitions} partitions ...")
        produced_per_s = _prefill(settings, w)
        store = RedisStore.from_settings(settings.redis)
        store.start()
        stack.callback(store.close)
        worker = _spawn_worker(stack, "worker", workdir, env)
        out("  e2e: one worker consumes them ...")
        clock = _wait_applied(
            store,
            [worker],
            w.events,
            timeout=600.0,
            mark=(_joins_at(w), lambda: _hits(metrics_port)),
        )
        memory = redis_memory(store, settings, w)
        hit_rate = _hit_rate([_hits(metrics_port)], [clock.marked])
        stages = _stages(metrics_port)
        out("  e2e: two workers in another group consume them ...")
        pair = _two_workers(stack, env, workdir, w)
        out("  e2e: one worker in another group consumes them, on a 3-node Redis Cluster ...")
        cluster = _on_cluster(stack, env, workdir, w)
        out(f"  e2e: freshness at {w.offered_rate:,.0f} events/s for {w.freshness_seconds:.0f} s")
        freshness = _freshness(settings, store, worker, metrics_port, w, w.events)
        worker.stop(timeout=30.0)
    one_rate = _rate(w.events, clock)
    return {
        "workload": asdict(w),
        "workers_1": {
            "events_per_s": one_rate,
            "seconds": round(clock.done - clock.first, 2),
            "first_batch_events": clock.first_applied,
            "produce_events_per_s": round(produced_per_s),
            "stage_seconds": stages,
        },
        "workers_2": pair.figures,
        "workers_1_redis_cluster": {
            **cluster,
            "ratio_to_one_redis": (
                round(cluster["events_per_s"] / one_rate, 2)
                if cluster["events_per_s"] and one_rate
                else None
            ),
        },
        "freshness_at_10k_per_s": freshness,
        "redis": memory,
        "quality": {
            "recall@10_workers_1": hit_rate,
            "recall@10_workers_2": pair.hit_rate,
            "measure": "online hit@10 (prequential recall@10) over the stream from the "
            "point the second worker is started (workload second_joins_at; the same events "
            "in the one-worker run): of the positives on items new to their user, the share "
            "whose item was in the list last published to the user, from the workers' "
            "stream_rec_online_hits_total and stream_rec_online_positives_total then and at "
            "the end",
        },
    }


def _spawn_worker(stack: ExitStack, name: str, workdir: Path, env: dict[str, str]) -> ChildProcess:
    """``stream-rec run`` as a child process, killed on the way out after a failure."""
    worker = ChildProcess(name, workdir)
    worker.spawn([sys.executable, "-m", "stream_rec", "run"], env)
    stack.callback(worker.kill)
    return worker


def _settings(env: dict[str, str]) -> Settings:
    saved = dict(os.environ)
    try:
        os.environ.clear()
        os.environ.update(env)
        return load_settings()
    finally:
        os.environ.clear()
        os.environ.update(saved)


def prefill_messages(w: Workload, count: int | None = None) -> Iterator[tuple[bytes, bytes]]:
    """(key, value) of the pre-filled stream's first ``count`` events (all by default)."""
    columns = workload_columns(w, w.events, w.seed, span_seconds=w.events / 1_000.0)
    start_ts = 1.7e9
    for e in range(w.events if count is None else min(count, w.events)):
        yield encode(columns, e, round(start_ts + float(columns.offsets[e]), 3), "b")


def _prefill(settings: Settings, w: Workload) -> float:
    producer = make_producer(settings.kafka, settings.topics, linger_ms=20)
    started = time.perf_counter()
    try:
        for key, value in prefill_messages(w):
            producer.send(settings.topics.events, key=key, value=value)
        producer.flush()
    finally:
        producer.close()
    return w.events / (time.perf_counter() - started)


@dataclass(frozen=True)
class _Clock:
    first: float
    first_applied: int
    done: float
    marked: Any = None
    """What ``mark`` returned when its share of the events was applied (see
    :func:`_wait_applied`)."""


def _applied(store: RedisStore) -> int:
    return sum(store.offsets().values())


def _rate(total: int, clock: _Clock) -> int | None:
    """Events/s from the clock's start to ``total`` applied (None if none came after)."""
    if clock.first_applied >= total:
        return None
    return round((total - clock.first_applied) / max(clock.done - clock.first, 1e-9))


@dataclass(frozen=True)
class _Pair:
    figures: dict[str, Any]
    hit_rate: float | None


def _two_workers(stack: ExitStack, env: dict[str, str], workdir: Path, w: Workload) -> _Pair:
    """A new group (and Redis prefix) on the pre-filled events: one worker alone for the
    first ``second_joins_at`` of them, then a second joins; the pair's rate is measured
    once both hold partitions, side by side with the first worker's rate alone."""
    ports = [free_port(), free_port()]
    pair_env = {
        **env,
        "STREAM_REC_REDIS__KEY_PREFIX": "bench-two-workers",
        "STREAM_REC_WORKER__GROUP_ID": "bench-two-workers",
        "STREAM_REC_METRICS__LAG_INTERVAL_SECONDS": "0.2",  # tells when each has partitions
    }
    pair_settings = _settings(pair_env)
    events_topic = pair_settings.topics.events
    store = RedisStore.from_settings(pair_settings.redis)
    store.start()
    workers: list[ChildProcess] = []

    def add_worker() -> None:
        port = ports[len(workers)]
        worker_env = {**pair_env, "STREAM_REC_METRICS__PORT": str(port)}
        workers.append(_spawn_worker(stack, f"worker-{len(workers) + 2}", workdir, worker_env))

    try:
        add_worker()
        joins_at = _joins_at(w)
        alone = _wait_applied(store, workers, joins_at, timeout=600.0)
        first_alone = _hits(ports[0])
        add_worker()
        at_start: list[list[float]] = []

        def both_hold() -> bool:
            if not all(_holds_partitions(port, events_topic) for port in ports):
                return False
            at_start.append([_consumed(port) for port in ports])
            return True

        both = _wait_applied(store, workers, w.events, timeout=600.0, ready=both_hold)
        hit_rate = _hit_rate([_hits(port) for port in ports], [first_alone, (0.0, 0.0)])
        merged = _gauge(ports[0], "stream_rec_merged_commits_total")
        shares = [
            round(_consumed(port) - before)
            for port, before in zip(ports, at_start[0] if at_start else [0.0, 0.0], strict=True)
        ]
        for worker in workers:
            worker.stop(timeout=30.0)
    finally:
        store.close()
    pair_rate, alone_rate = _rate(w.events, both), _rate(joins_at, alone)
    return _Pair(
        {
            "events_per_s": pair_rate,
            "seconds": round(both.done - both.first, 2),
            "applied_before_the_clock": both.first_applied,
            "first_alone_events_per_s": alone_rate,
            "ratio_to_first_alone": (
                round(pair_rate / alone_rate, 2) if pair_rate and alone_rate else None
            ),
            "merged_commits_of_the_first": merged,
            "events_consumed_by_each_on_the_clock": shares,
        },
        hit_rate,
    )


def _joins_at(w: Workload) -> int:
    """Events applied before the second of two workers is started."""
    return int(w.events * w.second_joins_at)


def _consumed(metrics_port: int) -> float:
    """Events-topic messages a worker has read so far."""
    return _gauge(metrics_port, "stream_rec_events_consumed_total") or 0.0


def _hits(metrics_port: int) -> tuple[float, float]:
    """A worker's (hits, scored positives) so far."""
    return (
        _gauge(metrics_port, "stream_rec_online_hits_total") or 0.0,
        _gauge(metrics_port, "stream_rec_online_positives_total") or 0.0,
    )


def _hit_rate(ends: list[tuple[float, float]], starts: list[tuple[float, float]]) -> float | None:
    """Hits over scored positives between ``starts`` and ``ends`` (one pair per worker)."""
    hits = sum(end[0] - start[0] for end, start in zip(ends, starts, strict=True))
    scored = sum(end[1] - start[1] for end, start in zip(ends, starts, strict=True))
    return round(hits / scored, 4) if scored else None


def _on_cluster(
    stack: ExitStack, env: dict[str, str], workdir: Path, w: Workload
) -> dict[str, Any]:
    """One worker of a new group on the pre-filled events, its state on a local 3-node
    Redis Cluster: its events/s, and the keys each node holds after the replay."""
    cluster = stack.enter_context(LocalRedisCluster(workdir=workdir / "cluster"))
    cluster_env = {
        **env,
        "STREAM_REC_REDIS__URL": cluster.url,
        "STREAM_REC_REDIS__KEY_PREFIX": "bench-cluster",
        "STREAM_REC_WORKER__GROUP_ID": "bench-cluster",
        "STREAM_REC_METRICS__PORT": str(free_port()),
    }
    store = RedisStore.from_settings(_settings(cluster_env).redis)
    store.start()
    try:
        worker = _spawn_worker(stack, "worker-cluster", workdir, cluster_env)
        clock = _wait_applied(store, [worker], w.events, timeout=600.0)
        worker.stop(timeout=30.0)
        keys_by_node = [int(server.dbsize()) for server in _primaries(store)]
    finally:
        store.close()
    return {
        "events_per_s": _rate(w.events, clock),
        "seconds": round(clock.done - clock.first, 2),
        "nodes": len(keys_by_node),
        "keys_by_node": keys_by_node,
    }


def _primaries(store: RedisStore) -> list[Any]:
    client = store.client
    return [client.get_redis_connection(node) for node in client.get_primaries()]


def _holds_partitions(metrics_port: int, topic: str) -> bool:
    """Whether the worker reports the lag of a partition of ``topic`` (it is assigned one);
    False while its metrics server is not up yet."""
    try:
        text = _metrics_text(metrics_port)
    except OSError:  # urllib's URLError included
        return False
    return any(
        line.startswith("stream_rec_consumer_lag{") and f'topic="{topic}"' in line
        for line in text.splitlines()
    )


def _wait_applied(
    store: RedisStore,
    workers: list[ChildProcess],
    total: int,
    timeout: float,
    ready: Callable[[], bool] = lambda: True,
    mark: tuple[int, Callable[[], Any]] | None = None,
) -> _Clock:
    """Poll the stored offsets (every 10 ms) until they cover ``total`` events; the clock
    starts at the first commit seen once ``ready()``. ``mark`` (n, call): ``call()`` once,
    when the offsets first cover n events."""
    deadline = time.monotonic() + timeout
    first, first_applied, marked = 0.0, 0, None
    while time.monotonic() < deadline:
        for worker in workers:
            worker.check_alive()
        applied = _applied(store)
        now = time.perf_counter()
        if applied and not first and ready():
            first, first_applied = now, applied
        if mark is not None and applied >= mark[0]:
            marked, mark = mark[1](), None
        if applied >= total:
            return (
                _Clock(first, first_applied, now, marked)
                if first
                else _Clock(now, total, now, marked)
            )
        time.sleep(0.01)
    raise TimeoutError(f"the worker applied {_applied(store)} of {total} events in {timeout} s")


def redis_memory(store: RedisStore, settings: Settings, w: Workload) -> dict[str, Any]:
    """Bytes per user and per item held in Redis (every key of the entity: its state
    record, counters, row in the registry, version, seen list and latest list), from
    MEMORY USAGE."""
    client = store.client
    keys = KeySpace(settings.redis.key_prefix)
    used = int(client.info("memory")["used_memory"])

    def usage(key: str) -> int:
        return int(client.memory_usage(key, samples=0) or 0)

    shards = range(USER_SHARDS)
    users = sum(int(client.hlen(keys.users(shard))) for shard in shards)
    items = int(client.hlen(keys.table("items")))
    sample = [_text(f) for f in client.hkeys(keys.users(0))[:1_000]]
    per_user_keys = np.mean([usage(keys.seen(u)) + usage(keys.recommendation(u)) for u in sample])

    def registry(table: str) -> int:
        return usage(keys.registry(table)) + usage(keys.registry_index(table))

    user_hashes = sum(
        usage(keys.users(shard)) + usage(keys.user_events(shard)) + usage(keys.versions(shard))
        for shard in shards
    ) + registry("users")
    item_hashes = usage(keys.table("items")) + usage(keys.item_events) + registry("items")
    return {
        "bytes_per_user": round(user_hashes / max(users, 1) + float(per_user_keys)),
        "bytes_per_item": round(item_hashes / max(items, 1)),
        "raw_bytes_per_vector": w.factors * 4,
        "users": users,
        "items": items,
        "used_memory_bytes": used,
    }


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _freshness(
    settings: Settings,
    store: RedisStore,
    worker: ChildProcess,
    metrics_port: int,
    w: Workload,
    applied_before: int,
) -> dict[str, Any]:
    """Produce at the offered rate with ts = send time; the lists published after."""
    topic = settings.topics.recommendations
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka.bootstrap_servers)
    partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
    ends = consumer.end_offsets(partitions)
    n = int(w.offered_rate * w.freshness_seconds)
    columns = workload_columns(w, n, w.seed + 1, span_seconds=w.freshness_seconds)
    producer = make_producer(settings.kafka, settings.topics, linger_ms=1)
    stages_before = _stages(metrics_port)
    started = time.perf_counter()
    phase_start = time.time()
    try:
        for e in range(n):
            due = started + e / w.offered_rate
            pause = due - time.perf_counter()
            if pause > 0.001:
                time.sleep(pause)
            key, value = encode(columns, e, time.time(), "f")
            producer.send(settings.topics.events, key=key, value=value)
        producer.flush()
    finally:
        producer.close()
    achieved = n / (time.perf_counter() - started)
    _wait_applied(store, [worker], applied_before + n, timeout=120.0)
    stages = {
        stage: round((seconds - stages_before.get(stage, 0.0)) / n * 1e6, 1)
        for stage, seconds in _stages(metrics_port).items()
    }
    delays = [
        record.timestamp / 1000.0 - float(orjson.loads(record.value)["event_ts"])
        for record in _read_from(consumer, ends)
        if record.value and float(orjson.loads(record.value)["event_ts"]) >= phase_start
    ]
    consumer.close()
    if not delays:
        raise RuntimeError("no list was published during the freshness phase")
    return {
        "offered_events_per_s": round(achieved),
        "lists": len(delays),
        "p50_s": round(float(np.percentile(delays, 50)), 4),
        "p99_s": round(float(np.percentile(delays, 99)), 4),
        "stage_us_per_event": stages,
    }


def _read_from(consumer: KafkaConsumer, starts: dict[TopicPartition, int]) -> Iterator[Any]:
    consumer.assign(list(starts))
    for partition, offset in starts.items():
        consumer.seek(partition, offset)
    ends = consumer.end_offsets(list(starts))
    remaining = {p for p in starts if ends[p] > starts[p]}
    deadline = time.monotonic() + 60
    while remaining and time.monotonic() < deadline:
        for partition, records in consumer.poll(timeout_ms=500).items():
            yield from records
            if consumer.position(partition) >= ends[partition]:
                remaining.discard(partition)


def _metrics_text(metrics_port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as r:
        return str(r.read().decode())


def _gauge(metrics_port: int, name: str) -> float | None:
    """An unlabelled sample (gauge or counter) of the worker's /metrics (None if absent)."""
    for line in _metrics_text(metrics_port).splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


_STAGE = re.compile(r'^stream_rec_stage_seconds_total\{stage="([a-z_]+)"\} ([0-9.e+-]+)$')


def _stages(metrics_port: int) -> dict[str, float]:
    """The worker's seconds by stage, from its /metrics."""
    stages = {}
    for line in _metrics_text(metrics_port).splitlines():
        match = _STAGE.match(line)
        if match:
            stages[match.group(1)] = round(float(match.group(2)), 2)
    return stages
