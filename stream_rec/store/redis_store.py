"""The model state in Redis (one server or a Redis Cluster): rows as bytes records in
hashes, one MULTI/EXEC per commit on the shared hash tag, then one idempotent script per
user shard (see :mod:`stream_rec.store.keys` for the layout).

A commit WATCHes the generation and its partitions' epochs, reads what it must (the
stored offsets; the stored shared rows when another writer committed since this one's
sync), and writes in one MULTI/EXEC: the shared rows, offsets and windows, and for each
user shard its users' changes as an outbox entry numbered by the commit's generation. If
a watched key moved meanwhile, it starts over (unless an epoch moved: then it is fenced).
Once the transaction is in, each touched shard takes its pending entries, in generation
order, in one script that skips those at or below the shard's watermark - so a crash or
a lost reply between the two steps leaves entries that the next commit on the shard, a
load or ``stats`` applies, and never applies one twice.
"""

from __future__ import annotations

import logging
import struct
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import redis
from redis.typing import EncodableT, FieldT

from stream_rec.config import RedisSettings
from stream_rec.faults import crash_point
from stream_rec.model import SHARED_TABLES, TABLES, ModelDelta, TableRows
from stream_rec.store.base import (
    Checkpoint,
    CommitOutcome,
    SharedState,
    StateSnapshot,
    StoreFenced,
    StoreStateMismatch,
    StoreStats,
    StoreUnavailable,
)
from stream_rec.store.keys import USER_SHARDS, KeySpace, user_shard

log = logging.getLogger(__name__)

SCHEMA_VERSION = "5"
_SCAN_COUNT = 2_000
_COMMIT_ATTEMPTS = 20
# KEYS: the registry list and its index hash; ARGV: known, then the ids to register.
_REGISTER = """
local known = tonumber(ARGV[1])
for n = 2, #ARGV do
  if redis.call('HEXISTS', KEYS[2], ARGV[n]) == 0 then
    local length = redis.call('RPUSH', KEYS[1], ARGV[n])
    redis.call('HSET', KEYS[2], ARGV[n], length - 1)
  end
end
return redis.call('LRANGE', KEYS[1], known, -1)
"""
# KEYS: a shard's users, user-events and versions hashes and its watermark; ARGV: the
# shard's tag, then its outbox entries in generation order, each framed as in the outbox
# (see _frame): its generation, then its fields (see _shard_changes). An entry at or below
# the watermark was applied already: it is skipped. One argument an entry, not one a field:
# redis-py packed a commit's hundred thousand fields one by one in Python.
_APPLY = """
local tag = ARGV[1]
local function unframe(blob)
  local n = struct.unpack('<I4', blob)
  local fields, at = {}, 5 + 4 * n
  for f = 1, n do
    local length = struct.unpack('<I4', blob, 1 + 4 * f)
    fields[f] = string.sub(blob, at, at + length - 1)
    at = at + length
  end
  return fields
end
local function apply(a)
  local j = 2
  local n = tonumber(a[j]); j = j + 1
  for _ = 1, n do
    redis.call('HSET', KEYS[1], a[j], a[j + 1])
    redis.call('HSET', KEYS[2], a[j], a[j + 2])
    j = j + 3
  end
  n = tonumber(a[j]); j = j + 1
  for _ = 1, n do
    redis.call('HSET', KEYS[3], a[j], a[j + 1]); j = j + 2
  end
  local cap = tonumber(a[j]); n = tonumber(a[j + 1]); j = j + 2
  for _ = 1, n do
    local key = tag .. ':seen:' .. a[j]
    local last = j + 1 + tonumber(a[j + 1]); j = j + 2
    while j <= last do
      local upto = math.min(j + 999, last)
      redis.call('RPUSH', key, unpack(a, j, upto))
      j = upto + 1
    end
    redis.call('LTRIM', key, -cap, -1)
  end
  local ttl = tonumber(a[j]); n = tonumber(a[j + 1]); j = j + 2
  for _ = 1, n do
    local key = tag .. ':rec:' .. a[j]
    if ttl > 0 then
      redis.call('SET', key, a[j + 1], 'EX', ttl)
    else
      redis.call('SET', key, a[j + 1])
    end
    j = j + 2
  end
end
local applied = tonumber(redis.call('GET', KEYS[4]) or '0')
for i = 2, #ARGV do
  local entry = unframe(ARGV[i])
  local generation = tonumber(entry[1])
  if generation > applied then
    apply(entry)
    applied = generation
  end
end
redis.call('SET', KEYS[4], applied)
return applied
"""
_GLOBAL = "g:"
_CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
_UNAVAILABLE = (
    redis.ConnectionError,
    redis.TimeoutError,
    redis.BusyLoadingError,
    redis.exceptions.ClusterDownError,
    redis.exceptions.TryAgainError,
    redis.exceptions.MovedError,  # a slot moved under a script sent to its old node
)
_T = TypeVar("_T")


class RedisStore:
    """A :class:`~stream_rec.store.base.StateStore` on one Redis server or a Redis Cluster
    (a ``redis+cluster://`` or ``rediss+cluster://`` URL naming any of its nodes).

    The client is created in :meth:`start`. Connection failures surface as
    :class:`StoreUnavailable`, so that callers retry without knowing about Redis.
    """

    def __init__(
        self,
        url: str,
        key_prefix: str,
        password: str | None = None,
        socket_timeout: float = 5.0,
    ) -> None:
        self._url = url
        self._password = password
        self._socket_timeout = socket_timeout
        self.keys = KeySpace(key_prefix)
        self._client: redis.Redis | redis.RedisCluster | None = None
        self._register: Any = None
        self._trim: dict[int, int] = {}
        """shard -> the watermark last applied there: its outbox entries up to it go
        with the next commit."""

    @classmethod
    def from_settings(cls, settings: RedisSettings) -> RedisStore:
        """The store ``STREAM_REC_REDIS__*`` describes (not yet started)."""
        password = None if settings.password is None else settings.password.get_secret_value()
        return cls(settings.url, settings.key_prefix, password, settings.socket_timeout_seconds)

    @property
    def client(self) -> Any:
        """The redis-py client (``redis.Redis`` or ``redis.RedisCluster``)."""
        if self._client is None:
            raise RuntimeError("RedisStore.start() has not been called")
        return self._client

    @property
    def is_cluster(self) -> bool:
        return urlsplit(self._url).scheme in _CLUSTER_SCHEMES

    def start(self) -> None:
        options: dict[str, Any] = {
            "password": self._password,
            "socket_timeout": self._socket_timeout,
            "socket_connect_timeout": self._socket_timeout,
        }
        parts = urlsplit(self._url)
        if parts.scheme in _CLUSTER_SCHEMES:
            url = urlunsplit(parts._replace(scheme=_CLUSTER_SCHEMES[parts.scheme]))
            self._client = self._call(lambda: redis.RedisCluster.from_url(url, **options))
        else:
            self._client = redis.Redis.from_url(self._url, health_check_interval=30, **options)
        self._register = self._client.register_script(_REGISTER)
        self.ping()

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def ping(self) -> None:
        self._call(self.client.ping)

    def load(self, layout: str) -> StateSnapshot:
        return self._call(lambda: self._load(layout))

    def check(self, layout: str) -> None:
        self._call(lambda: self._meta(layout))

    def commit(self, checkpoint: Checkpoint) -> CommitOutcome:
        return self._call(lambda: self._commit(checkpoint))

    def register(self, table: str, ids: Sequence[str], known: int) -> list[str]:
        keys = [self.keys.registry(table), self.keys.registry_index(table)]
        tail = self._call(lambda: self._register(keys=keys, args=[known, *ids]))
        return [_text(entity_id) for entity_id in tail]

    def generation(self) -> int:
        return int(self._call(lambda: self.client.get(self.keys.generation)) or 0)

    def load_shared(self, layout: str) -> SharedState:
        def read() -> SharedState:
            generation = int(self.client.get(self.keys.generation) or 0)
            meta = self._meta(layout)
            tables = {name: self._load_table(name) for name in SHARED_TABLES}
            return SharedState(
                ModelDelta(tables, _globals(meta)), self._load_registry(), generation
            )

        return self._call(read)

    def claim(self, partitions: Sequence[str]) -> dict[str, int]:
        def incr() -> dict[str, int]:
            pipe = self.client.pipeline(transaction=True)
            for partition in partitions:
                pipe.incr(self.keys.epoch(partition))
            return dict(zip(partitions, (int(v) for v in pipe.execute()), strict=True))

        return self._call(incr) if partitions else {}

    def offsets(self) -> dict[str, int]:
        return _int_map(self._call(lambda: self.client.hgetall(self.keys.offsets)))

    def recommendation(self, user_id: str) -> bytes | None:
        value = self._call(lambda: self.client.get(self.keys.recommendation(user_id)))
        return None if value is None else _bytes(value)

    def stats(self) -> StoreStats:
        """The counters once every pending outbox entry is applied (which a crash between
        a commit and its shards' step may have left)."""

        def read() -> StoreStats:
            self._settle(range(USER_SHARDS))
            keys = self.keys
            pipe = self.client.pipeline(transaction=False)
            for shard in range(USER_SHARDS):
                pipe.hvals(keys.user_events(shard))
                pipe.hlen(keys.users(shard))
            pipe.hvals(keys.item_events)
            pipe.hlen(keys.table("items"))
            pipe.hgetall(keys.offsets)
            *by_shard, item_counts, items, offsets = pipe.execute()
            return StoreStats(
                applied_events=sum(int(v) for counts in by_shard[::2] for v in counts),
                item_events_sum=sum(int(v) for v in item_counts),
                users=sum(int(n) for n in by_shard[1::2]),
                items=int(items),
                partition_offsets=_int_map(offsets),
            )

        return self._call(read)

    def _commit(self, cp: Checkpoint) -> CommitOutcome:
        keys = self.keys
        partitions = sorted(cp.epochs)
        epoch_keys = [keys.epoch(p) for p in partitions]
        offset_fields = sorted(cp.offsets)
        changes = _shard_changes(cp)
        pipe: Any  # redis-py's Pipeline.watch is untyped
        with self.client.pipeline(transaction=True) as pipe:
            for _ in range(_COMMIT_ATTEMPTS):
                try:
                    # Optimistic: EXEC fails if the generation or an epoch moves before it.
                    pipe.watch(keys.generation, *epoch_keys)
                    if partitions:
                        _check_epochs(cp, partitions, [pipe.get(k) for k in epoch_keys])
                    if offset_fields and all(
                        stored is not None and int(stored) >= cp.offsets[f]
                        for f, stored in zip(
                            offset_fields, pipe.hmget(keys.offsets, offset_fields), strict=True
                        )
                    ):
                        pipe.reset()  # an earlier attempt landed; its reply was lost
                        self._settle(changes)
                        return CommitOutcome(self.generation(), replayed=True)
                    generation = int(pipe.get(keys.generation) or 0)
                    model, rebased = cp.model, None
                    if cp.rebase is not None and cp.generation != generation:
                        model = rebased = cp.rebase(model, *self._stored_shared(pipe, model))
                    pipe.multi()
                    self._queue_shared_writes(pipe, cp, model)
                    entries = {
                        shard: _frame([str(generation + 1).encode(), *fields])
                        for shard, fields in changes.items()
                    }
                    for shard, entry in entries.items():
                        # The entries of earlier commits still pending there, then its own.
                        pipe.zrangebyscore(keys.outbox(shard), "-inf", generation)
                        pipe.zadd(keys.outbox(shard), {entry: generation + 1})
                    trims = len(self._trim)
                    for shard, applied in self._trim.items():
                        pipe.zremrangebyscore(keys.outbox(shard), "-inf", applied)
                    pipe.incr(keys.generation)
                    replies = pipe.execute()
                    break
                except redis.WatchError:
                    # Another commit came first - or the connection failed while watching
                    # (redis-py says WatchError for both): a moved epoch means fenced.
                    pipe.reset()
                    if partitions:
                        _check_epochs(cp, partitions, self.client.mget(epoch_keys))
            else:
                raise StoreUnavailable(
                    f"{_COMMIT_ATTEMPTS} attempts to commit met concurrent commits"
                )
        self._trim = {}
        crash_point("after-exec")
        outboxes = replies[-1 - trims - 2 * len(entries) : -1 - trims]
        self._apply(
            {
                shard: [*map(_bytes, outboxes[2 * n]), entry]
                for n, (shard, entry) in enumerate(entries.items())
            }
        )
        return CommitOutcome(int(replies[-1]), rebased)

    def _settle(self, shards: Iterable[int]) -> None:
        """Apply every pending outbox entry of ``shards`` (idempotent: anyone may)."""
        shards = list(shards)
        pipe = self.client.pipeline(transaction=False)
        for shard in shards:
            pipe.zrange(self.keys.outbox(shard), 0, -1)
        self._apply(
            {
                shard: [_bytes(blob) for blob in framed]
                for shard, framed in zip(shards, pipe.execute(), strict=True)
                if framed
            }
        )

    def _apply(self, pending: dict[int, list[bytes]]) -> None:
        """Run each shard's outbox entries (framed, in generation order) through the apply
        script; remember each shard's watermark, up to which the next commit trims."""
        if not pending:
            return
        keys = self.keys
        calls: dict[str, tuple[Any, list[int]]] = {}  # node -> (its pipeline, its shards)
        for shard, framed in pending.items():
            shard_keys = [
                keys.users(shard),
                keys.user_events(shard),
                keys.versions(shard),
                keys.applied(shard),
            ]
            pipe, shards = self._node_pipeline(shard_keys[0], calls)
            pipe.eval(_APPLY, len(shard_keys), *shard_keys, keys.shard(shard), *framed)
            shards.append(shard)
        for pipe, shards in calls.values():
            try:
                replies = pipe.execute()
            except redis.exceptions.MovedError:
                # A slot moved: these pipelines bypass the cluster client, so refresh its
                # slot map before the caller retries (the entries wait in the outbox).
                self.client.nodes_manager.initialize()
                raise
            for shard, applied in zip(shards, replies, strict=True):
                self._trim[shard] = int(applied)

    def _node_pipeline(
        self, key: str, calls: dict[str, tuple[Any, list[int]]]
    ) -> tuple[Any, list[int]]:
        """A plain pipeline to the server holding ``key`` (redis-py's cluster pipeline
        sends no scripts): one per node of a cluster, one in all on one server."""
        if not self.is_cluster:
            return calls.setdefault("", (self.client.pipeline(transaction=False), []))
        node = self.client.get_node_from_key(key)
        if node.name not in calls:
            server = self.client.get_redis_connection(node)
            calls[node.name] = (server.pipeline(transaction=False), [])
        return calls[node.name]

    def _stored_shared(
        self, pipe: Any, model: ModelDelta
    ) -> tuple[dict[str, list[bytes | None]], dict[str, bytes]]:
        """The stored records of the delta's shared rows (aligned with its ids), and the
        stored globals, read while watching."""
        stored: dict[str, list[bytes | None]] = {}
        for name, rows in model.tables.items():
            if name in SHARED_TABLES and rows.ids:
                values = pipe.hmget(self.keys.table(name), rows.ids)
                stored[name] = [None if v is None else _bytes(v) for v in values]
        meta = {_text(k): _bytes(v) for k, v in pipe.hgetall(self.keys.meta).items()}
        return stored, _globals(meta)

    def _queue_shared_writes(self, pipe: Any, cp: Checkpoint, model: ModelDelta) -> None:
        keys = self.keys
        for name, rows in model.tables.items():
            if rows.ids and name in SHARED_TABLES:
                pipe.hset(keys.table(name), mapping=_mapping(rows.ids, rows.records))
                if name == "items":
                    pipe.hset(keys.item_events, mapping=_mapping(rows.ids, rows.counts))
        meta: dict[FieldT, EncodableT] = {"schema": SCHEMA_VERSION, "layout": cp.layout}
        meta.update({_GLOBAL + name: value for name, value in model.globals.items()})
        pipe.hset(keys.meta, mapping=meta)
        for partition, entries in cp.dedup.items():
            if entries:
                pipe.zadd(keys.dedup(partition), dict(entries))
        for partition, lowest in cp.dedup_from.items():
            pipe.zremrangebyscore(keys.dedup(partition), "-inf", f"({lowest}")
        if cp.offsets:
            pipe.hset(keys.offsets, mapping=_mapping(list(cp.offsets), list(cp.offsets.values())))

    def _load(self, layout: str) -> StateSnapshot:
        client = self.client
        generation = int(client.get(self.keys.generation) or 0)  # first: a commit moves it
        meta = self._meta(layout)
        self._settle(range(USER_SHARDS))
        tables = {name: self._load_table(name) for name in SHARED_TABLES}
        tables["users"] = self._load_users()
        offsets = _int_map(client.hgetall(self.keys.offsets))
        versions: dict[str, int] = {}
        for shard in range(USER_SHARDS):
            versions.update(_int_map(dict(self._scan_hash(self.keys.versions(shard)))))
        return StateSnapshot(
            model=ModelDelta({name: tables[name] for name in TABLES}, _globals(meta)),
            seen=self._load_seen(tables["users"].ids),
            versions=versions,
            offsets=offsets,
            dedup={p: self._load_dedup(p) for p in offsets},
            registry=self._load_registry(),  # last: it numbers every row read before it
            generation=generation,
        )

    def _load_registry(self) -> dict[str, list[str]]:
        pipe = self.client.pipeline(transaction=False)
        for name in TABLES:
            pipe.lrange(self.keys.registry(name), 0, -1)
        return {
            name: [_text(i) for i in ids] for name, ids in zip(TABLES, pipe.execute(), strict=True)
        }

    def _meta(self, layout: str) -> dict[str, bytes]:
        """The meta hash, checked against this schema and ``layout``."""
        meta = {_text(k): _bytes(v) for k, v in self.client.hgetall(self.keys.meta).items()}
        schema = meta.get("schema")
        if schema is None and self.client.exists(f"{self.keys.prefix}:meta"):
            schema = b"4 or older"  # before the cluster layout, the meta key had no tag
        if schema is not None and schema.decode() != SCHEMA_VERSION:
            raise StoreStateMismatch(
                f"Redis prefix {self.keys.prefix!r} holds state of schema {schema.decode()}; this "
                f"version writes schema {SCHEMA_VERSION}: use a new key prefix"
            )
        stored = meta.get("layout")
        if stored is not None and stored.decode() != layout:
            raise StoreStateMismatch(
                f"Redis prefix {self.keys.prefix!r} holds state of another model shape "
                f"({stored.decode()}); this model is {layout}. A change of factors, features, "
                "session length, neighbours or window needs a new key prefix"
            )
        return meta

    def _load_dedup(self, partition: str) -> list[tuple[str, int]]:
        pairs: Any = self.client.zrange(self.keys.dedup(partition), 0, -1, withscores=True)
        return [(_text(event_id), int(offset)) for event_id, offset in pairs]

    def _load_table(self, name: str) -> TableRows:
        """A shared table, with the item counters for items."""
        # SCAN may return a field twice while the hash rehashes: a dict keeps one.
        records = dict(self._scan_hash(self.keys.table(name)))
        counts = dict(self._scan_hash(self.keys.item_events)) if name == "items" else {}
        return _rows(records, counts)

    def _load_users(self) -> TableRows:
        records: dict[bytes, bytes] = {}
        counts: dict[bytes, bytes] = {}
        for shard in range(USER_SHARDS):
            records.update(self._scan_hash(self.keys.users(shard)))
            counts.update(self._scan_hash(self.keys.user_events(shard)))
        return _rows(records, counts)

    def _load_seen(self, user_ids: list[str]) -> dict[str, list[str]]:
        seen: dict[str, list[str]] = {}
        for start in range(0, len(user_ids), _SCAN_COUNT):
            chunk = user_ids[start : start + _SCAN_COUNT]
            pipe = self.client.pipeline(transaction=False)
            for user_id in chunk:
                pipe.lrange(self.keys.seen(user_id), 0, -1)
            for user_id, members in zip(chunk, pipe.execute(), strict=True):
                if members:
                    seen[user_id] = [_text(m) for m in members]
        return seen

    def _scan_hash(self, key: str) -> Iterator[tuple[bytes, bytes]]:
        yield from self.client.hscan_iter(key, count=_SCAN_COUNT)

    def _call(self, fn: Callable[[], _T]) -> _T:
        try:
            return fn()
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(f"Redis unreachable: {type(exc).__name__}: {exc}") from exc


def _shard_changes(cp: Checkpoint) -> dict[int, list[bytes]]:
    """The checkpoint's user changes cut by shard, each as the fields of an outbox entry
    (after its generation): its users (id, record, counter), versions (id, version), seen
    items (cap, then user, count, items) and lists (ttl, then user, message)."""
    users: dict[int, list[bytes]] = defaultdict(list)
    versions: dict[int, list[bytes]] = defaultdict(list)
    seen: dict[int, list[bytes]] = defaultdict(list)
    lists: dict[int, list[bytes]] = defaultdict(list)
    rows = cp.model.tables.get("users")
    if rows is not None:
        for user_id, record, count in zip(rows.ids, rows.records, rows.counts, strict=True):
            users[user_shard(user_id)] += [user_id.encode(), record, str(count).encode()]
    for user_id, version in cp.versions.items():
        versions[user_shard(user_id)] += [user_id.encode(), str(version).encode()]
    for user_id, item_ids in cp.seen.items():
        if item_ids:
            seen[user_shard(user_id)] += [
                user_id.encode(),
                str(len(item_ids)).encode(),
                *(i.encode() for i in item_ids),
            ]
    for user_id, message in cp.lists.items():
        lists[user_shard(user_id)] += [user_id.encode(), message]
    cap, ttl = str(cp.seen_cap).encode(), str(cp.list_ttl_seconds).encode()
    changes: dict[int, list[bytes]] = {}
    for shard in sorted({*users, *versions, *seen, *lists}):
        changes[shard] = [
            str(len(users[shard]) // 3).encode(), *users[shard],
            str(len(versions[shard]) // 2).encode(), *versions[shard],
            cap, str(_count_seen(seen[shard])).encode(), *seen[shard],
            ttl, str(len(lists[shard]) // 2).encode(), *lists[shard],
        ]  # fmt: skip
    return changes


def _count_seen(fields: list[bytes]) -> int:
    """How many users a seen section (user, count, items...) holds."""
    users, j = 0, 0
    while j < len(fields):
        users, j = users + 1, j + 2 + int(fields[j + 1])
    return users


def _frame(fields: list[bytes]) -> bytes:
    """Fields as one byte string: their count and lengths (uint32 each, little-endian),
    then the fields; the apply script takes it apart.

    >>> _frame([b"7", b"ab"])
    b'\\x02\\x00\\x00\\x00\\x01\\x00\\x00\\x00\\x02\\x00\\x00\\x007ab'
    """
    return struct.pack(f"<I{len(fields)}I", len(fields), *map(len, fields)) + b"".join(fields)


def _rows(records: dict[bytes, bytes], counts: dict[bytes, bytes]) -> TableRows:
    return TableRows(
        [_text(k) for k in records],
        list(records.values()),
        [int(counts.get(k, 0)) for k in records],
    )


def _check_epochs(cp: Checkpoint, partitions: list[str], current: Any) -> None:
    """Raise :class:`StoreFenced` unless each partition still has the committer's epoch."""
    for partition, value in zip(partitions, current, strict=True):
        if value is None or int(value) != cp.epochs[partition]:
            raise StoreFenced(f"{partition} was claimed by another writer", [partition])


def _globals(meta: dict[str, bytes]) -> dict[str, bytes]:
    """The model's global state among the meta hash's fields (those under ``g:``)."""
    return {k[len(_GLOBAL) :]: v for k, v in meta.items() if k.startswith(_GLOBAL)}


def _mapping(fields: list[str], values: list[Any]) -> dict[FieldT, EncodableT]:
    return dict(zip(fields, values, strict=True))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _bytes(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


def _int_map(raw: Any) -> dict[str, int]:
    """A hash reply ({field: value}) as str -> int."""
    return {_text(k): int(v) for k, v in raw.items()}
