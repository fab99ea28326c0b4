"""The in-memory twin of the Redis store, for fast unit tests (same contract, no server)."""

from __future__ import annotations

import copy

import numpy as np

from stream_rec.model import EntityRows
from stream_rec.store.base import (
    Checkpoint,
    StateSnapshot,
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
        self._rows: dict[str, dict[str, bytes]] = {"users": {}, "items": {}}
        self._counts: dict[str, dict[str, int]] = {"users": {}, "items": {}}
        self._widths: dict[str, int] = {}
        self._seen: dict[str, set[str]] = {}
        self._lists: dict[str, bytes] = {}
        self._versions: dict[str, int] = {}
        self._rating = (0.0, 0)
        self._offsets: dict[str, int] = {}

    def start(self) -> None:
        self.ping()

    def close(self) -> None:
        return None

    def ping(self) -> None:
        if not self.available:
            raise StoreUnavailable("memory store marked unavailable")

    def load(self, user_width: int, item_width: int) -> StateSnapshot:
        self.ping()
        for kind, width in (("users", user_width), ("items", item_width)):
            stored = self._widths.get(kind)
            if stored is not None and stored != width:
                raise StoreStateMismatch(f"stored {kind} rows have width {stored}, not {width}")
        return StateSnapshot(
            users=self._entity_rows("users", user_width),
            items=self._entity_rows("items", item_width),
            seen={u: sorted(items) for u, items in self._seen.items()},
            versions=dict(self._versions),
            rating_sum=self._rating[0],
            rating_count=self._rating[1],
            offsets=dict(self._offsets),
        )

    def commit(self, checkpoint: Checkpoint) -> None:
        self.ping()
        cp = copy.deepcopy(checkpoint)
        for kind, state in (("users", cp.users), ("items", cp.items)):
            self._widths[kind] = state.rows.shape[1]
            for entity_id, row, count in zip(
                state.ids, state.rows, state.counts.tolist(), strict=True
            ):
                self._rows[kind][entity_id] = row.astype(np.float32).tobytes()
                self._counts[kind][entity_id] = count
        for user_id, item_ids in cp.seen.items():
            self._seen.setdefault(user_id, set()).update(item_ids)
        self._lists.update(cp.lists)
        self._versions.update(cp.versions)
        self._rating = (cp.rating_sum, cp.rating_count)
        self._offsets.update(cp.offsets)
        self.commits += 1

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
            users=len(self._rows["users"]),
            items=len(self._rows["items"]),
            partition_offsets=dict(self._offsets),
        )

    def _entity_rows(self, kind: str, width: int) -> EntityRows:
        rows = self._rows[kind]
        if not rows:
            return EntityRows.empty(width)
        ids = list(rows)
        matrix = np.frombuffer(b"".join(rows.values()), np.float32).reshape(len(ids), width)
        counts = np.array([self._counts[kind][i] for i in ids], np.int64)
        return EntityRows(ids, matrix.copy(), counts)
