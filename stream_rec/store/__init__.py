"""Model state storage: Redis for real, an in-memory twin for unit tests."""

from stream_rec.store.base import (
    Checkpoint,
    CommitOutcome,
    SharedState,
    StateSnapshot,
    StateStore,
    StoreFenced,
    StoreStateMismatch,
    StoreStats,
    StoreUnavailable,
)
from stream_rec.store.keys import KeySpace
from stream_rec.store.memory import MemoryStore
from stream_rec.store.redis_store import RedisStore

__all__ = [
    "Checkpoint",
    "CommitOutcome",
    "KeySpace",
    "MemoryStore",
    "RedisStore",
    "SharedState",
    "StateSnapshot",
    "StateStore",
    "StoreFenced",
    "StoreStateMismatch",
    "StoreStats",
    "StoreUnavailable",
]
