"""The model state in Redis: one MULTI/EXEC per batch, rows as float32 bytes in hashes."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import numpy as np
import redis
from redis.typing import EncodableT, FieldT

from stream_rec.config import RedisSettings
from stream_rec.model import EntityRows
from stream_rec.store.base import (
    Checkpoint,
    StateSnapshot,
    StoreStateMismatch,
    StoreStats,
    StoreUnavailable,
)
from stream_rec.store.keys import KeySpace

log = logging.getLogger(__name__)

SCHEMA_VERSION = "1"
_SCAN_COUNT = 2_000
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
        self.ping()

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def ping(self) -> None:
        self._call(self.client.ping)

    def load(self, user_width: int, item_width: int) -> StateSnapshot:
        return self._call(lambda: self._load(user_width, item_width))

    def commit(self, checkpoint: Checkpoint) -> None:
        self._call(lambda: self._commit(checkpoint))

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
            pipe.hlen(self.keys.users)
            pipe.hlen(self.keys.items)
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

    def _commit(self, cp: Checkpoint) -> None:
        keys = self.keys
        pipe = self.client.pipeline(transaction=True)
        for table, counters, state in (
            (keys.users, keys.user_events, cp.users),
            (keys.items, keys.item_events, cp.items),
        ):
            if state.ids:
                pipe.hset(table, mapping=dict(zip(state.ids, _row_bytes(state), strict=True)))
                pipe.hset(
                    counters, mapping=dict(zip(state.ids, state.counts.tolist(), strict=True))
                )
        for user_id, item_ids in cp.seen.items():
            if item_ids:
                pipe.sadd(keys.seen(user_id), *item_ids)
        for user_id, message in cp.lists.items():
            pipe.set(keys.recommendation(user_id), message)
        if cp.versions:
            pipe.hset(
                keys.versions, mapping=_mapping(list(cp.versions), list(cp.versions.values()))
            )
        pipe.hset(
            keys.meta,
            mapping={
                "schema": SCHEMA_VERSION,
                "user_width": cp.users.rows.shape[1],
                "item_width": cp.items.rows.shape[1],
                "rating_sum": repr(cp.rating_sum),
                "rating_count": cp.rating_count,
            },
        )
        if cp.offsets:
            pipe.hset(keys.offsets, mapping=_mapping(list(cp.offsets), list(cp.offsets.values())))
        pipe.execute()

    def _load(self, user_width: int, item_width: int) -> StateSnapshot:
        client = self.client
        meta = {_text(k): _text(v) for k, v in client.hgetall(self.keys.meta).items()}
        for name, width in (("user_width", user_width), ("item_width", item_width)):
            stored = meta.get(name)
            if stored is not None and int(stored) != width:
                raise StoreStateMismatch(
                    f"Redis prefix {self.keys.prefix!r} holds rows of {name}={stored}, this "
                    f"model needs {width}: the number of factors changed; use a new key prefix"
                )
        users = self._load_rows(self.keys.users, self.keys.user_events, user_width)
        items = self._load_rows(self.keys.items, self.keys.item_events, item_width)
        return StateSnapshot(
            users=users,
            items=items,
            seen=self._load_seen(users.ids),
            versions={
                k.decode(): int(v) for k, v in dict(self._scan_hash(self.keys.versions)).items()
            },
            rating_sum=float(meta.get("rating_sum", 0.0)),
            rating_count=int(meta.get("rating_count", 0)),
            offsets=_int_map(client.hgetall(self.keys.offsets)),
        )

    def _load_rows(self, table: str, counters: str, width: int) -> EntityRows:
        # SCAN may return a field twice while the hash rehashes: a dict keeps one.
        rows_of = dict(self._scan_hash(table))
        if not rows_of:
            return EntityRows.empty(width)
        ids = [_text(k) for k in rows_of]
        rows = np.frombuffer(b"".join(rows_of.values()), np.float32).reshape(len(ids), width)
        counts = dict(self._scan_hash(counters))
        count_of = [int(counts.get(k, 0)) for k in rows_of]
        return EntityRows(ids, rows.copy(), np.asarray(count_of, np.int64))

    def _load_seen(self, user_ids: list[str]) -> dict[str, list[str]]:
        seen: dict[str, list[str]] = {}
        for start in range(0, len(user_ids), _SCAN_COUNT):
            chunk = user_ids[start : start + _SCAN_COUNT]
            pipe = self.client.pipeline(transaction=False)
            for user_id in chunk:
                pipe.smembers(self.keys.seen(user_id))
            for user_id, members in zip(chunk, pipe.execute(), strict=True):
                if members:
                    seen[user_id] = sorted(_text(m) for m in members)
        return seen

    def _scan_hash(self, key: str) -> Iterator[tuple[bytes, bytes]]:
        yield from self.client.hscan_iter(key, count=_SCAN_COUNT)

    def _call(self, fn: Callable[[], _T]) -> _T:
        try:
            return fn()
        except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError) as exc:
            raise StoreUnavailable(f"Redis unreachable: {type(exc).__name__}: {exc}") from exc


def _row_bytes(state: EntityRows) -> list[bytes]:
    rows = np.ascontiguousarray(state.rows, dtype=np.float32)
    return [row.tobytes() for row in rows]


def _mapping(fields: list[str], values: list[Any]) -> dict[FieldT, EncodableT]:
    return dict(zip(fields, values, strict=True))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _bytes(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


def _int_map(raw: Any) -> dict[str, int]:
    """A hash reply ({field: value}) as str -> int."""
    return {_text(k): int(v) for k, v in raw.items()}
