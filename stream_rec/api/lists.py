"""The latest list of each user, held in the server's memory, with Redis as the fallback.

The feed (:mod:`stream_rec.api.feed`) offers every message of the recommendations topic
to a :class:`ListCache`; a GET reads the cache without a network round trip. The topic is
compacted (its latest message per user is the user's current list), so replaying it from
the beginning fills the cache. Until the feed has read up to the end offsets it saw at
start (``ready``), and for any user the cache does not hold, :class:`LatestLists` reads
Redis, as ``stream-rec recommend`` does, and keeps what it read.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import orjson

from stream_rec.store import RedisStore

log = logging.getLogger(__name__)

Source = Literal["cache", "redis"]


@dataclass(frozen=True, slots=True)
class CachedList:
    """One user's list as published: the message bytes, unchanged, and what orders them."""

    user_id: str
    version: int
    generated_at: float
    """Unix seconds, the worker's clock."""
    body: bytes
    """The recommendation message of the wire contract (JSON)."""

    @classmethod
    def parse(cls, body: bytes) -> CachedList | None:
        """The entry for a recommendation message; None when it is not one.

        >>> CachedList.parse(b'{"user_id":"u","items":[],"version":3,"generated_at":1.0}').version
        3
        >>> CachedList.parse(b'not json') is None
        True
        """
        try:
            message = orjson.loads(body)
            user_id, version, generated_at = (
                message["user_id"],
                message["version"],
                message["generated_at"],
            )
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return None
        if not (
            isinstance(user_id, str)
            and isinstance(version, int)
            and isinstance(generated_at, int | float)
        ):
            return None
        return cls(user_id, version, float(generated_at), body)


class ListCache:
    """user id -> newest :class:`CachedList`, at most ``max_lists`` (least recently updated
    evicted first), each valid for ``ttl_seconds`` after it was generated (0: forever, as
    the lists in Redis).

    Offers come from the event loop (the feed, and lists read from Redis); a lock keeps
    them safe from any other thread; reads take none (a dict lookup is atomic in CPython).
    """

    def __init__(self, max_lists: int, ttl_seconds: float = 0.0) -> None:
        self._lists: OrderedDict[str, CachedList] = OrderedDict()
        self._max = max_lists
        self._ttl = ttl_seconds
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._lists)

    def get(self, user_id: str, now: float | None = None) -> CachedList | None:
        """The user's list, or None if not held or expired."""
        entry = self._lists.get(user_id)
        if entry is None or not self._ttl:
            return entry
        if (time.time() if now is None else now) - entry.generated_at > self._ttl:
            return None
        return entry

    def offer(self, entry: CachedList) -> bool:
        """Keep ``entry`` unless a list of the same or a higher version is held; True if kept.

        A replayed batch republishes lists with the versions they had, so an equal version
        carries the same list and is not news.
        """
        if self._max <= 0:
            return False
        with self._lock:
            held = self._lists.get(entry.user_id)
            if held is not None and held.version >= entry.version:
                return False
            self._lists[entry.user_id] = entry
            self._lists.move_to_end(entry.user_id)
            while len(self._lists) > self._max:
                self._lists.popitem(last=False)
        return True

    def recent_users(self, limit: int) -> list[str]:
        """The users whose lists changed last, newest first."""
        with self._lock:
            users: list[str] = []
            for user_id in reversed(self._lists):
                if len(users) >= limit:
                    break
                users.append(user_id)
        return users


class LatestLists:
    """Reads a user's current list: from the cache once the feed is ``ready``, else (and
    on a miss) from Redis, keeping what Redis returned.

    ``store`` is started by the caller; its calls run in a worker thread, so the event
    loop never waits on Redis.
    """

    def __init__(
        self,
        cache: ListCache,
        store: RedisStore,
        ready: Callable[[], bool],
        on_read: Callable[[Source], None] | None = None,
    ) -> None:
        self.cache = cache
        self._store = store
        self._ready = ready
        self._on_read = on_read or (lambda _source: None)

    def cached(self, user_id: str) -> CachedList | None:
        """The cache's entry, if the cache may be trusted for this user right now."""
        if not self._ready():
            return None
        return self.cache.get(user_id)

    async def get(self, user_id: str) -> CachedList | None:
        """The user's list, or None for a user without one. Raises
        :class:`~stream_rec.store.StoreUnavailable` when Redis is needed and unreachable."""
        entry = self.cached(user_id)
        if entry is not None:
            self._on_read("cache")
            return entry
        raw = await asyncio.to_thread(self._store.recommendation, user_id)
        if raw is None:
            return None
        entry = CachedList.parse(raw)
        if entry is None:
            log.warning("the list stored in Redis for a user is not a recommendation message")
            return None
        self._on_read("redis")
        self.cache.offer(entry)
        return entry
