"""The model state in Redis: one MULTI/EXEC per commit, rows as bytes records in hashes.

A commit WATCHes the generation and its partitions' epochs, reads what it must (the
stored offsets; the stored shared rows when another writer committed since this one's
sync), and writes everything in one MULTI/EXEC that also moves the generation on; if a
watched key moved meanwhile, it starts over (unless an epoch moved: then it is fenced).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import redis
from redis.typing import EncodableT, FieldT

from stream_rec.config import RedisSettings
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
from stream_rec.store.keys import KeySpace

log = logging.getLogger(__name__)

SCHEMA_VERSION = "4"
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
_GLOBAL = "g:"
_COUNTED = {"users": "user_events", "items": "item_events"}
_T = TypeVar("_T")


class RedisStore:
    """A :class:`~stream_rec.store.base.StateStore` on one Redis server.

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
        self._client: redis.Redis | None = None
        self._register: Any = None

    @classmethod
    def from_settings(cls, settings: RedisSettings) -> RedisStore:
        """The store ``STREAM_REC_REDIS__*`` describes (not yet started)."""
        password = None if settings.password is None else settings.password.get_secret_value()
        return cls(settings.url, settings.key_prefix, password, settings.socket_timeout_seconds)

    @property
    def client(self) -> redis.Redis:
        if self._client is None:
            raise RuntimeError("RedisStore.start() has not been called")
        return self._client

    def start(self) -> None:
        self._client = redis.Redis.from_url(
            self._url,
            password=self._password,
            socket_timeout=self._socket_timeout,
            socket_connect_timeout=self._socket_timeout,
            health_check_interval=30,
        )
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

        return self._call(incr)

    def offsets(self) -> dict[str, int]:
        return _int_map(self._call(lambda: self.client.hgetall(self.keys.offsets)))

    def recommendation(self, user_id: str) -> bytes | None:
        value = self._call(lambda: self.client.get(self.keys.recommendation(user_id)))
        return None if value is None else _bytes(value)

    def stats(self) -> StoreStats:
        def read() -> StoreStats:
            pipe = self.client.pipeline(transaction=True)
            pipe.hvals(self.keys.user_events)
            pipe.hvals(self.keys.item_events)
            pipe.hlen(self.keys.table("users"))
            pipe.hlen(self.keys.table("items"))
            pipe.hgetall(self.keys.offsets)
            user_counts, item_counts, users, items, offsets = pipe.execute()
            return StoreStats(
                applied_events=sum(int(v) for v in user_counts),
                item_events_sum=sum(int(v) for v in item_counts),
                users=int(users),
                items=int(items),
                partition_offsets=_int_map(offsets),
            )

        return self._call(read)

    def _commit(self, cp: Checkpoint) -> CommitOutcome:
        keys = self.keys
        partitions = sorted(cp.epochs)
        epoch_keys = [keys.epoch(p) for p in partitions]
        offset_fields = sorted(cp.offsets)
        pipe: Any  # redis-py's Pipeline.watch is untyped
        with self.client.pipeline(transaction=True) as pipe:
            for _ in range(_COMMIT_ATTEMPTS):
                try:
                    # Optimistic: EXEC fails if the generation or an epoch moves before it.
                    pipe.watch(keys.generation, *epoch_keys)
                    if partitions:
                        _check_epochs(cp, partitions, pipe.mget(epoch_keys))
                    if offset_fields and all(
                        stored is not None and int(stored) >= cp.offsets[f]
                        for f, stored in zip(
                            offset_fields, pipe.hmget(keys.offsets, offset_fields), strict=True
                        )
                    ):
                        pipe.reset()  # an earlier attempt landed; its reply was lost
                        return CommitOutcome(self.generation(), replayed=True)
                    generation = int(pipe.get(keys.generation) or 0)
                    model, rebased = cp.model, None
                    if cp.rebase is not None and cp.generation != generation:
                        model = rebased = cp.rebase(model, *self._stored_shared(pipe, model))
                    pipe.multi()
                    self._queue_writes(pipe, cp, model)
                    pipe.incr(keys.generation)
                    return CommitOutcome(int(pipe.execute()[-1]), rebased)
                except redis.WatchError:
                    # Another commit came first - or the connection failed while watching
                    # (redis-py says WatchError for both): a moved epoch means fenced.
                    pipe.reset()
                    if partitions:
                        _check_epochs(cp, partitions, self.client.mget(epoch_keys))
        raise StoreUnavailable(f"{_COMMIT_ATTEMPTS} attempts to commit met concurrent commits")

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

    def _queue_writes(self, pipe: Any, cp: Checkpoint, model: ModelDelta) -> None:
        keys = self.keys
        for name, rows in model.tables.items():
            if rows.ids:
                pipe.hset(keys.table(name), mapping=_mapping(rows.ids, rows.records))
                if name in _COUNTED:
                    counters = getattr(keys, _COUNTED[name])
                    pipe.hset(counters, mapping=_mapping(rows.ids, rows.counts))
        for user_id, item_ids in cp.seen.items():
            if item_ids:
                pipe.rpush(keys.seen(user_id), *item_ids)
                pipe.ltrim(keys.seen(user_id), -cp.seen_cap, -1)
        ttl = cp.list_ttl_seconds or None
        for user_id, message in cp.lists.items():
            pipe.set(keys.recommendation(user_id), message, ex=ttl)
        if cp.versions:
            pipe.hset(
                keys.versions, mapping=_mapping(list(cp.versions), list(cp.versions.values()))
            )
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
        tables = {name: self._load_table(name) for name in TABLES}
        offsets = _int_map(client.hgetall(self.keys.offsets))
        return StateSnapshot(
            model=ModelDelta(tables, _globals(meta)),
            seen=self._load_seen(tables["users"].ids),
            versions=_int_map(dict(self._scan_hash(self.keys.versions))),
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
        # SCAN may return a field twice while the hash rehashes: a dict keeps one.
        records = dict(self._scan_hash(self.keys.table(name)))
        ids = [_text(k) for k in records]
        counts: dict[bytes, bytes] = {}
        if name in _COUNTED:
            counts = dict(self._scan_hash(getattr(self.keys, _COUNTED[name])))
        return TableRows(ids, list(records.values()), [int(counts.get(k, 0)) for k in records])

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
        except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError) as exc:
            raise StoreUnavailable(f"Redis unreachable: {type(exc).__name__}: {exc}") from exc


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
