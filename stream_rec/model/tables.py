"""Growable tables of float32 rows, one per entity kind (users, items).

Each row holds an entity's latent vector in columns ``[0, k)`` followed by its scalar
parameters (biases). Rows are assigned in order of first appearance; capacity doubles, so
growth is amortised O(1) per new id.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from stream_rec.model.random import init_rows, stable_key

_MIN_CAPACITY = 1024


@dataclass(frozen=True)
class EntityRows:
    """A slice of one table, as it is persisted and restored.

    ``rows`` is float32 of shape (n, width); ``counts`` int64 of shape (n,): how many
    events of each entity the model has applied.
    """

    ids: list[str]
    rows: npt.NDArray[np.float32]
    counts: npt.NDArray[np.int64]

    @staticmethod
    def empty(width: int) -> EntityRows:
        return EntityRows([], np.zeros((0, width), np.float32), np.zeros(0, np.int64))


class EntityTable:
    """Rows of float32 parameters for the entities of one kind, addressed by string id.

    ``k`` latent columns come first, then ``width - k`` scalar columns (biases), which
    start at 0. New rows are drawn by :func:`stream_rec.model.random.init_rows`, so an
    entity's initial vector depends only on (seed, its id), never on arrival order.
    """

    def __init__(self, k: int, width: int, init_std: float, seed: int) -> None:
        if width < k:
            raise ValueError(f"width {width} < k {k}")
        self.k = k
        self.width = width
        self._init_std = init_std
        self._seed = seed
        self._index: dict[str, int] = {}
        self._ids: list[str] = []
        self.rows: npt.NDArray[np.float32] = np.zeros((_MIN_CAPACITY, width), np.float32)
        self.counts: npt.NDArray[np.int64] = np.zeros(_MIN_CAPACITY, np.int64)
        self.keys: npt.NDArray[np.uint64] = np.zeros(_MIN_CAPACITY, np.uint64)

    def __len__(self) -> int:
        return len(self._ids)

    @property
    def ids(self) -> Sequence[str]:
        """Ids in row order (row r holds ``ids[r]``)."""
        return self._ids

    def row_of(self, entity_id: str) -> int | None:
        """The row of ``entity_id``, or None if the table has never seen it."""
        return self._index.get(entity_id)

    def rows_for(self, entity_ids: Iterable[str]) -> npt.NDArray[np.int64]:
        """Rows of ``entity_ids`` (int64), creating and initialising rows for new ids."""
        index = self._index
        first_new = len(self._ids)
        out: list[int] = []
        for entity_id in entity_ids:
            row = index.get(entity_id)
            if row is None:
                row = len(self._ids)
                index[entity_id] = row
                self._ids.append(entity_id)
            out.append(row)
        if len(self._ids) > first_new:
            self._initialise(first_new, len(self._ids))
        return np.asarray(out, dtype=np.int64)

    def view(self) -> npt.NDArray[np.float32]:
        """The live rows, shape (len(self), width); a view, not a copy."""
        return self.rows[: len(self._ids)]

    def export(self, rows: npt.NDArray[np.int64]) -> EntityRows:
        """Copies of the given rows, for persisting."""
        return EntityRows(
            [self._ids[r] for r in rows.tolist()], self.rows[rows].copy(), self.counts[rows].copy()
        )

    def restore(self, state: EntityRows) -> None:
        """Load persisted rows, replacing the values of ids already present."""
        if state.rows.shape[1:] != (self.width,):
            raise ValueError(
                f"stored rows have width {state.rows.shape[1:]}, the model expects {self.width}"
                " (was the number of factors changed? use a new key prefix)"
            )
        rows = self.rows_for(state.ids)
        self.rows[rows] = state.rows
        self.counts[rows] = state.counts

    def _initialise(self, start: int, stop: int) -> None:
        self._grow(stop)
        self.keys[start:stop] = np.fromiter(
            (stable_key(i) for i in self._ids[start:stop]), np.uint64, stop - start
        )
        self.counts[start:stop] = 0
        init_rows(self.rows, start, stop, self.keys, self.k, self._init_std, self._seed)

    def _grow(self, needed: int) -> None:
        capacity = self.rows.shape[0]
        if needed <= capacity:
            return
        while capacity < needed:
            capacity *= 2
        rows = np.zeros((capacity, self.width), np.float32)
        rows[: self.rows.shape[0]] = self.rows
        counts = np.zeros(capacity, np.int64)
        counts[: self.counts.shape[0]] = self.counts
        keys = np.zeros(capacity, np.uint64)
        keys[: self.keys.shape[0]] = self.keys
        self.rows, self.counts, self.keys = rows, counts, keys
