"""The state store's contract, shared by the Redis store and its in-memory twin.

One :meth:`StateStore.commit` writes a whole batch - changed model rows, counters, seen
items, lists, versions and the partitions' next offsets - as one atomic step, so a reader
(or a restarted worker) sees every batch entirely or not at all.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from stream_rec.model import ModelDelta


class StoreUnavailable(Exception):
    """The store cannot be reached right now; the call may be retried unchanged."""


class StoreStateMismatch(Exception):
    """The stored state does not fit this model (for example another number of factors)."""


@dataclass(frozen=True)
class Checkpoint:
    """Everything one batch changed, written atomically by :meth:`StateStore.commit`.

    ``model`` holds the changed rows of each model table (records keyed by id) and the
    model's global state; ``seen`` only the items newly consumed in this batch; ``lists``
    maps user ids to their recommendation message (JSON bytes); ``offsets`` maps
    "topic:partition" to the next offset to apply; ``layout`` describes the records' shape.
    """

    model: ModelDelta
    seen: Mapping[str, Sequence[str]]
    lists: Mapping[str, bytes]
    versions: Mapping[str, int]
    offsets: Mapping[str, int]
    layout: str


@dataclass(frozen=True)
class StateSnapshot:
    """The whole persisted state, as a restarting worker loads it."""

    model: ModelDelta
    seen: dict[str, list[str]] = field(default_factory=dict)
    versions: dict[str, int] = field(default_factory=dict)
    offsets: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class StoreStats:
    """Operator figures (``stream-rec stats``): sums of the applied-event counters."""

    applied_events: int
    item_events_sum: int
    users: int
    items: int
    partition_offsets: dict[str, int]


class StateStore(Protocol):
    """Where the model's state lives between batches and across restarts."""

    def start(self) -> None:
        """Connect; raises :class:`StoreUnavailable` if the store cannot be reached."""

    def close(self) -> None:
        """Release connections; safe to call twice."""

    def ping(self) -> None:
        """Raise :class:`StoreUnavailable` unless the store answers."""

    def load(self, layout: str) -> StateSnapshot:
        """Everything stored; raises :class:`StoreStateMismatch` if it has another layout."""

    def commit(self, checkpoint: Checkpoint) -> None:
        """Write one batch's changes atomically; all or nothing."""

    def offsets(self) -> dict[str, int]:
        """The next offset to apply per "topic:partition", as last committed."""

    def recommendation(self, user_id: str) -> bytes | None:
        """The user's latest list (the recommendation message as JSON), if any."""

    def stats(self) -> StoreStats:
        """Counter sums and sizes, read from the store."""
