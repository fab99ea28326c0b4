"""The state store's contract, shared by the Redis store and its in-memory twin.

One :meth:`StateStore.commit` writes a whole batch - changed model rows, counters, seen
items, lists, versions, the event ids of the de-duplication windows and the partitions'
next offsets - as one atomic step, so a reader (or a restarted worker) sees every batch
entirely or not at all. A commit is also fenced: it only lands if every partition in it
still has the epoch its writer claimed, so a worker that lost a partition (a "zombie")
cannot overwrite the state of the partition's new owner.

Several workers share the items and feature tokens (each user has one writer: the worker
of its partition). Rows are numbered by one registry (:meth:`StateStore.register`), and a
commit counts a generation: a writer whose last sync is still the store's generation
writes its rows as they are; otherwise its shared rows are merged onto what the store
holds (its changes since its sync added, inside the same atomic step). A commit whose
partitions' stored offsets already reach its own was applied (its reply was lost): it is
not applied again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from stream_rec.model import ModelDelta


class StoreUnavailable(Exception):
    """The store cannot be reached right now; the call may be retried unchanged."""


class StoreStateMismatch(Exception):
    """The stored state does not fit this model (for example another number of factors)."""


class StoreFenced(Exception):
    """A partition of the commit was claimed by another writer: nothing was written."""

    def __init__(self, message: str, partitions: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.partitions = list(partitions)


StoredRows = Mapping[str, Sequence[bytes | None]]
Rebase = Callable[[ModelDelta, StoredRows, Mapping[str, bytes]], ModelDelta]
"""(the checkpoint's model delta, the stored records of its shared rows by table aligned
with its ids (None: not stored), the stored globals) -> the delta to write instead."""


@dataclass(frozen=True)
class Checkpoint:
    """Everything one batch changed, written atomically by :meth:`StateStore.commit`.

    - ``model``: the changed rows of each model table (records keyed by id) and the
      model's global state; ``layout`` describes the records' shape;
    - ``seen``: the items newly consumed in this batch, per user (appended to the user's
      list of seen items, of which the store keeps the last ``seen_cap``);
    - ``lists``: user id -> recommendation message (JSON), kept ``list_ttl_seconds``
      (0: forever); ``versions``: user id -> the version of that list;
    - ``offsets``: "topic:partition" -> the next offset to apply; ``epochs``: the epoch
      this writer claimed for each of those partitions;
    - ``dedup``: per partition, the (event id, offset) pairs added to its window, and
      ``dedup_from``: per partition, the lowest offset the window still holds;
    - ``generation``: the store generation the writer's shared rows were last in sync
      with (None: not in sync); unless it is the store's generation, ``rebase`` turns the
      delta into what is written (shared rows merged onto the stored ones).
    """

    model: ModelDelta
    seen: Mapping[str, Sequence[str]]
    lists: Mapping[str, bytes]
    versions: Mapping[str, int]
    offsets: Mapping[str, int]
    layout: str
    epochs: Mapping[str, int] = field(default_factory=dict)
    dedup: Mapping[str, Sequence[tuple[str, int]]] = field(default_factory=dict)
    dedup_from: Mapping[str, int] = field(default_factory=dict)
    seen_cap: int = 1_000
    list_ttl_seconds: int = 0
    generation: int | None = None
    rebase: Rebase | None = None


@dataclass(frozen=True)
class CommitOutcome:
    """What a commit did: the store's generation after it, and ``rebased`` - the delta
    written if it was merged onto other writers' rows (None: written as given). ``replayed``:
    an earlier attempt had been applied already (its reply lost); nothing was written."""

    generation: int
    rebased: ModelDelta | None = None
    replayed: bool = False


@dataclass(frozen=True)
class StateSnapshot:
    """The whole persisted state, as a restarting worker loads it.

    ``registry``: each table's ids in row order; ``generation``: the store's generation,
    read before the rest (a commit during the load moves it on)."""

    model: ModelDelta
    seen: dict[str, list[str]] = field(default_factory=dict)
    versions: dict[str, int] = field(default_factory=dict)
    offsets: dict[str, int] = field(default_factory=dict)
    dedup: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    registry: dict[str, list[str]] = field(default_factory=dict)
    generation: int = 0


@dataclass(frozen=True)
class SharedState:
    """The shared rows (items, feature tokens) and globals as stored now, with the
    registry and the generation (read first): what a worker refreshes its copy from."""

    model: ModelDelta
    registry: dict[str, list[str]]
    generation: int


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

    def check(self, layout: str) -> None:
        """Raise :class:`StoreStateMismatch` if the stored state has another schema or
        layout than ``layout`` (no rows are read)."""

    def claim(self, partitions: Sequence[str]) -> dict[str, int]:
        """Take over "topic:partition"s: a new epoch for each (any older claim is fenced)."""

    def commit(self, checkpoint: Checkpoint) -> CommitOutcome:
        """Write one batch's changes atomically; all or nothing. Raises
        :class:`StoreFenced` (writing nothing) if a partition's epoch moved on."""

    def register(self, table: str, ids: Sequence[str], known: int) -> list[str]:
        """Give the ids not yet registered in ``table`` the next rows; return the ids of
        rows ``known`` onwards, in row order (they include every id given)."""

    def generation(self) -> int:
        """How many commits the store has taken (0 when empty)."""

    def load_shared(self, layout: str) -> SharedState:
        """The shared rows, globals and registry as stored now."""

    def offsets(self) -> dict[str, int]:
        """The next offset to apply per "topic:partition", as last committed."""

    def recommendation(self, user_id: str) -> bytes | None:
        """The user's latest list (the recommendation message as JSON), if any."""

    def stats(self) -> StoreStats:
        """Counter sums and sizes, read from the store."""
