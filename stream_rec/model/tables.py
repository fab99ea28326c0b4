"""Growable tables, one per kind of entity (users, items, feature tokens).

A table holds, per row: a float32 parameter row (the latent vector in columns ``[0, k)``,
then scalar parameters), an event counter, a stable 64-bit key of the id, and any number
of named side columns (ints such as recent items or feature rows, floats such as
co-visitation weights). Rows are assigned in order of first appearance; capacity
doubles, so growth is amortised O(1) per new id. Rows persist as one bytes record each,
with their row number, so a restored table is numbered exactly as the original was.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from stream_rec.model.random import init_rows, stable_key

_MIN_CAPACITY = 1024
_S = TypeVar("_S", bound=np.generic)
_HEADER = np.dtype([("row", "<i8"), ("count", "<i8")])


@dataclass(frozen=True)
class SideColumn:
    """A named per-row array next to the parameters: ``width`` values of ``dtype``."""

    name: str
    dtype: type[np.generic]
    width: int
    fill: float


@dataclass(frozen=True)
class TableRows:
    """Rows of one table as persisted: ids, their records and their event counters."""

    ids: list[str]
    records: list[bytes]
    counts: list[int]


class EntityTable:
    """Parameter rows (float32) and side columns for the entities of one kind.

    ``k`` latent columns come first, then ``width - k`` scalar columns that start at 0.
    New rows are drawn by :func:`stream_rec.model.random.init_rows` (when ``init_std``
    is positive), so an entity's initial vector depends only on (seed, its id).
    """

    def __init__(
        self,
        k: int,
        width: int,
        init_std: float,
        seed: int,
        side: Sequence[SideColumn] = (),
    ) -> None:
        if width < k:
            raise ValueError(f"width {width} < k {k}")
        self.k = k
        self.width = width
        self._init_std = init_std
        self._seed = seed
        self._index: dict[str, int] = {}
        self._ids: list[str] = []
        self._side_spec = tuple(side)
        self.rows: npt.NDArray[np.float32] = np.zeros((_MIN_CAPACITY, width), np.float32)
        self.counts: npt.NDArray[np.int64] = np.zeros(_MIN_CAPACITY, np.int64)
        self.keys: npt.NDArray[np.uint64] = np.zeros(_MIN_CAPACITY, np.uint64)
        self.side: dict[str, npt.NDArray[Any]] = {
            c.name: np.full((_MIN_CAPACITY, c.width), c.fill, c.dtype) for c in self._side_spec
        }
        self._record = np.dtype(
            [("header", _HEADER), ("params", "<f4", (width,))]
            + [(c.name, np.dtype(c.dtype).newbyteorder("<"), (c.width,)) for c in self._side_spec]
        )

    def __len__(self) -> int:
        return len(self._ids)

    @property
    def ids(self) -> Sequence[str]:
        """Ids in row order (row r holds ``ids[r]``)."""
        return self._ids

    @property
    def layout(self) -> str:
        """A description of the record layout; persisted state must match it."""
        sides = ",".join(f"{c.name}:{np.dtype(c.dtype).name}x{c.width}" for c in self._side_spec)
        return f"params:f4x{self.width};{sides}"

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
        """The live parameter rows, shape (len(self), width); a view, not a copy."""
        return self.rows[: len(self._ids)]

    def export(self, rows: npt.NDArray[np.int64]) -> TableRows:
        """The given rows as records (row number, counter, parameters, side columns)."""
        records = np.zeros(rows.shape[0], self._record)
        records["header"]["row"] = rows
        records["header"]["count"] = self.counts[rows]
        records["params"] = self.rows[rows]
        for column in self._side_spec:
            records[column.name] = self.side[column.name][rows]
        raw = records.tobytes()
        size = self._record.itemsize
        return TableRows(
            [self._ids[r] for r in rows.tolist()],
            [raw[n * size : (n + 1) * size] for n in range(rows.shape[0])],
            self.counts[rows].tolist(),
        )

    def restore(self, state: TableRows) -> None:
        """Load records at their original row numbers (the table must be empty)."""
        if len(self._ids):
            raise ValueError("restore() needs an empty table")
        if not state.ids:
            return
        size = self._record.itemsize
        if any(len(r) != size for r in state.records):
            raise ValueError(
                f"stored records are not {size} bytes ({self.layout}): was the model's shape "
                "changed (factors, features, session length, neighbours)? use a new key prefix"
            )
        records = np.frombuffer(b"".join(state.records), self._record)
        order = np.argsort(records["header"]["row"])
        rows = records["header"]["row"][order]
        if not np.array_equal(rows, np.arange(rows.shape[0])):
            raise ValueError("stored row numbers are not 0..n-1: the stored state is incomplete")
        ids = [state.ids[i] for i in order.tolist()]
        self._ids = ids
        self._index = {entity_id: row for row, entity_id in enumerate(ids)}
        n = len(ids)
        self._grow(n)
        self.keys[:n] = np.fromiter((stable_key(i) for i in ids), np.uint64, n)
        self.counts[:n] = records["header"]["count"][order]
        self.rows[:n] = records["params"][order]
        for column in self._side_spec:
            self.side[column.name][:n] = records[column.name][order]

    def _initialise(self, start: int, stop: int) -> None:
        self._grow(stop)
        self.keys[start:stop] = np.fromiter(
            (stable_key(i) for i in self._ids[start:stop]), np.uint64, stop - start
        )
        self.counts[start:stop] = 0
        if self._init_std > 0:
            init_rows(self.rows, start, stop, self.keys, self.k, self._init_std, self._seed)
        else:
            self.rows[start:stop] = 0.0

    def _grow(self, needed: int) -> None:
        capacity = self.rows.shape[0]
        if needed <= capacity:
            return
        while capacity < needed:
            capacity *= 2
        self.rows = grown(self.rows, capacity, 0.0)
        self.counts = grown(self.counts, capacity, 0)
        self.keys = grown(self.keys, capacity, 0)
        for column in self._side_spec:
            self.side[column.name] = grown(self.side[column.name], capacity, column.fill)


def grown(array: npt.NDArray[_S], capacity: int, fill: float) -> npt.NDArray[_S]:
    """A copy of ``array`` with ``capacity`` rows, the new ones set to ``fill``."""
    grown = np.full((capacity, *array.shape[1:]), fill, array.dtype)
    grown[: array.shape[0]] = array
    return grown


@dataclass(frozen=True)
class ModelDelta:
    """Rows of each table (as records) and the global state, to persist or restore."""

    tables: dict[str, TableRows]
    globals: dict[str, bytes] = field(default_factory=dict)
