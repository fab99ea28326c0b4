"""The in-memory twin of the Redis store, for fast unit tests (same contract, no server)."""

from __future__ import annotations

from collections.abc import Sequence

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


class MemoryStore:
    """A :class:`~stream_rec.store.base.StateStore` in dicts. ``available = False``
    makes every call raise :class:`StoreUnavailable`, to test the callers' retries."""

    def __init__(self) -> None:
        self.available = True
        self.commits = 0
        self._records: dict[str, dict[str, bytes]] = {name: {} for name in TABLES}
        self._counts: dict[str, dict[str, int]] = {name: {} for name in TABLES}
        self._globals: dict[str, bytes] = {}
        self._layout: str | None = None
        self._seen: dict[str, list[str]] = {}
        self._lists: dict[str, bytes] = {}
        self._versions: dict[str, int] = {}
        self._offsets: dict[str, int] = {}
        self._epochs: dict[str, int] = {}
        self._dedup: dict[str, dict[str, int]] = {}
        self._registry: dict[str, list[str]] = {name: [] for name in TABLES}
        self._registry_index: dict[str, dict[str, int]] = {name: {} for name in TABLES}
        self._generation = 0

    def start(self) -> None:
        self.ping()

    def close(self) -> None:
        return None

    def ping(self) -> None:
        if not self.available:
            raise StoreUnavailable("memory store marked unavailable")

    def check(self, layout: str) -> None:
        self.ping()
        if self._layout is not None and self._layout != layout:
            raise StoreStateMismatch(f"stored layout {self._layout} is not {layout}")

    def load(self, layout: str) -> StateSnapshot:
        self.check(layout)
        return StateSnapshot(
            model=ModelDelta(self._tables(TABLES), dict(self._globals)),
            seen={u: list(items) for u, items in self._seen.items()},
            versions=dict(self._versions),
            offsets=dict(self._offsets),
            dedup={p: sorted(w.items(), key=lambda e: e[1]) for p, w in self._dedup.items()},
            registry=self._registry_copy(),
            generation=self._generation,
        )

    def load_shared(self, layout: str) -> SharedState:
        self.ping()
        if self._layout is not None and self._layout != layout:
            raise StoreStateMismatch(f"stored layout {self._layout} is not {layout}")
        model = ModelDelta(self._tables(SHARED_TABLES), dict(self._globals))
        return SharedState(model, self._registry_copy(), self._generation)

    def _tables(self, names: Sequence[str]) -> dict[str, TableRows]:
        tables = {}
        for name in names:
            records, counts = self._records[name], self._counts[name]
            tables[name] = TableRows(
                list(records), list(records.values()), [counts[i] for i in records]
            )
        return tables

    def _registry_copy(self) -> dict[str, list[str]]:
        return {name: list(ids) for name, ids in self._registry.items()}

    def register(self, table: str, ids: Sequence[str], known: int) -> list[str]:
        self.ping()
        registry, index = self._registry[table], self._registry_index[table]
        for entity_id in ids:
            if entity_id not in index:
                index[entity_id] = len(registry)
                registry.append(entity_id)
        return registry[known:]

    def generation(self) -> int:
        self.ping()
        return self._generation

    def claim(self, partitions: Sequence[str]) -> dict[str, int]:
        self.ping()
        for partition in partitions:
            self._epochs[partition] = self._epochs.get(partition, 0) + 1
        return {p: self._epochs[p] for p in partitions}

    def commit(self, checkpoint: Checkpoint) -> CommitOutcome:
        self.ping()
        cp = checkpoint
        for partition, epoch in cp.epochs.items():
            if self._epochs.get(partition) != epoch:
                raise StoreFenced(f"{partition} was claimed by another writer", [partition])
        if cp.offsets and all(self._offsets.get(p, -1) >= o for p, o in cp.offsets.items()):
            return CommitOutcome(self._generation, replayed=True)
        model, rebased = cp.model, None
        if cp.rebase is not None and cp.generation != self._generation:
            stored = {
                name: [self._records[name].get(i) for i in rows.ids]
                for name, rows in model.tables.items()
                if name in SHARED_TABLES
            }
            model = rebased = cp.rebase(model, stored, dict(self._globals))
        for name, rows in model.tables.items():
            for entity_id, record, count in zip(rows.ids, rows.records, rows.counts, strict=True):
                self._records[name][entity_id] = record
                self._counts[name][entity_id] = count
        self._globals.update(model.globals)
        self._layout = cp.layout
        for user_id, item_ids in cp.seen.items():
            seen = self._seen.setdefault(user_id, [])
            seen.extend(list(item_ids))
            del seen[: max(0, len(seen) - cp.seen_cap)]
        self._lists.update(cp.lists)
        self._versions.update(cp.versions)
        for partition, entries in cp.dedup.items():
            self._dedup.setdefault(partition, {}).update(dict(entries))
        for partition, lowest in cp.dedup_from.items():
            window = self._dedup.get(partition, {})
            for event_id in [e for e, offset in window.items() if offset < lowest]:
                del window[event_id]
        self._offsets.update(cp.offsets)
        self.commits += 1
        self._generation += 1
        return CommitOutcome(self._generation, rebased)

    def offsets(self) -> dict[str, int]:
        self.ping()
        return dict(self._offsets)

    def recommendation(self, user_id: str) -> bytes | None:
        self.ping()
        return self._lists.get(user_id)

    def stats(self) -> StoreStats:
        self.ping()
        return StoreStats(
            applied_events=sum(self._counts["users"].values()),
            item_events_sum=sum(self._counts["items"].values()),
            users=len(self._records["users"]),
            items=len(self._records["items"]),
            partition_offsets=dict(self._offsets),
        )
