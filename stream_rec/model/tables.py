"""Growable tables, one per kind of entity (users, items, feature tokens).

A table holds, per row: a float32 parameter row (the latent vector in columns ``[0, k)``,
then scalar parameters), an event counter, a stable 64-bit key of the id, and any number
of named side columns (ints such as recent items or feature rows, floats such as
co-visitation weights). Rows are assigned in order of first appearance; capacity
doubles, so growth is amortised O(1) per new id. Rows persist as one bytes record each,
with their row number, so a restored table is numbered exactly as the original was.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import numpy as np
import numpy.typing as npt

from stream_rec.model.random import init_rows, stable_key
from stream_rec.model.session import merge_neighbours

_MIN_CAPACITY = 1024
_S = TypeVar("_S", bound=np.generic)
_HEADER = np.dtype([("row", "<i8"), ("count", "<i8")])

Allocator = Callable[[Sequence[str], int], Sequence[str]]
"""Gives rows to new ids: called with the ids a table does not know (in order of first
appearance) and its length, it returns the ids of the rows from that length on, in row
order (every given id among them, and other writers' new ids). See
:attr:`EntityTable.allocator`."""

Merge = Literal["replace", "sum", "neighbours", "weights"]


@dataclass(frozen=True)
class SideColumn:
    """A named per-row array next to the parameters: ``width`` values of ``dtype``.

    ``merge`` says how the changes of several writers to one row combine (in a shared
    table, see :meth:`EntityTable.merge`): "replace" - the writer's value where it changed
    it, else the stored one; "sum" - the stored value plus the writer's change;
    "neighbours" - a weighted neighbour list (ids here, weights in column ``pair``, which
    has merge "weights"): the weight changes of each neighbour add up, the strongest stay.
    """

    name: str
    dtype: type[np.generic]
    width: int
    fill: float
    merge: Merge = "replace"
    pair: str = ""


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

    A ``shared`` table is one that several writers update (items and feature tokens, when
    several workers share a store): it keeps a copy of each row as last synced with the
    store (the "base"), so that :meth:`merge` can add this writer's changes since then to
    whatever the store holds now.
    """

    def __init__(
        self,
        k: int,
        width: int,
        init_std: float,
        seed: int,
        side: Sequence[SideColumn] = (),
        shared: bool = False,
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
        self.shared = shared
        self._base: npt.NDArray[np.void] = np.zeros(_MIN_CAPACITY if shared else 0, self._record)
        self.allocator: Allocator | None = None
        """Where new ids get their rows (a registry shared by every writer); None: locally,
        in order of first appearance."""

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
        """Rows of ``entity_ids`` (int64), creating and initialising rows for new ids
        (numbered by :attr:`allocator` if set)."""
        index = self._index
        if self.allocator is not None:
            entity_ids = list(entity_ids)
            unknown = [e for e in dict.fromkeys(entity_ids) if e not in index]
            if unknown:
                tail = self.allocator(unknown, len(self._ids))
                # Up to the last of these ids only: rows beyond are other ids' (a crashed
                # run's, or other writers'), added when they appear here, as they would be.
                wanted = set(unknown)
                last = max((n for n, e in enumerate(tail) if e in wanted), default=-1)
                self.extend(tail[: last + 1])
        first_new = len(self._ids)
        out: list[int] = []
        for entity_id in entity_ids:
            row = index.get(entity_id)
            if row is None:
                if self.allocator is not None:
                    raise ValueError(f"the allocator gave no row to {entity_id!r}")
                row = len(self._ids)
                index[entity_id] = row
                self._ids.append(entity_id)
            out.append(row)
        if len(self._ids) > first_new:
            self._initialise(first_new, len(self._ids))
        return np.asarray(out, dtype=np.int64)

    def extend(self, entity_ids: Sequence[str]) -> None:
        """Append rows for ``entity_ids`` (new ids, in row order), freshly initialised."""
        first_new = len(self._ids)
        for entity_id in entity_ids:
            if entity_id in self._index:
                raise ValueError(f"{entity_id!r} has a row already")
            self._index[entity_id] = len(self._ids)
            self._ids.append(entity_id)
        if len(self._ids) > first_new:
            self._initialise(first_new, len(self._ids))

    def view(self) -> npt.NDArray[np.float32]:
        """The live parameter rows, shape (len(self), width); a view, not a copy."""
        return self.rows[: len(self._ids)]

    def export(self, rows: npt.NDArray[np.int64]) -> TableRows:
        """The given rows as records (row number, counter, parameters, side columns)."""
        return self._as_rows(rows, self._records(rows))

    def _records(self, rows: npt.NDArray[np.int64]) -> npt.NDArray[np.void]:
        records = np.zeros(rows.shape[0], self._record)
        records["header"]["row"] = rows
        records["header"]["count"] = self.counts[rows]
        records["params"] = self.rows[rows]
        for column in self._side_spec:
            records[column.name] = self.side[column.name][rows]
        return records

    def _as_rows(self, rows: npt.NDArray[np.int64], records: npt.NDArray[np.void]) -> TableRows:
        raw = records.tobytes()
        size = self._record.itemsize
        return TableRows(
            [self._ids[r] for r in rows.tolist()],
            [raw[n * size : (n + 1) * size] for n in range(rows.shape[0])],
            records["header"]["count"].tolist(),
        )

    def _parse(self, records: Sequence[bytes]) -> npt.NDArray[np.void]:
        size = self._record.itemsize
        if any(len(r) != size for r in records):
            raise ValueError(
                f"stored records are not {size} bytes ({self.layout}): was the model's shape "
                "changed (factors, features, session length, neighbours)? use a new key prefix"
            )
        return np.frombuffer(b"".join(records), self._record)

    def restore(self, state: TableRows, registered: Sequence[str] | None = None) -> None:
        """Load records at their row numbers (the table must be empty).

        Without ``registered`` the rows must be 0..n-1. With it (the ids in row order of
        the registry that numbered the rows), the table takes the registry's first n ids,
        n being one past the highest stored row; rows without a record (numbered, never
        committed) start fresh, as they would have.
        """
        if len(self._ids):
            raise ValueError("restore() needs an empty table")
        if not state.ids:
            return
        records = self._parse(state.records)
        stored_rows = records["header"]["row"]
        n = int(stored_rows.max()) + 1
        if registered is None:
            order = np.argsort(stored_rows)
            if not np.array_equal(stored_rows[order], np.arange(n)):
                raise ValueError(
                    "stored row numbers are not 0..n-1: the stored state is incomplete"
                )
            registered = [state.ids[i] for i in order.tolist()]
        if len(registered) < n or any(
            registered[r] != entity_id
            for r, entity_id in zip(stored_rows.tolist(), state.ids, strict=True)
        ):
            raise ValueError("stored rows do not match the registry: the stored state is broken")
        self.extend(registered[:n])
        self._write(stored_rows.astype(np.int64), records)

    def merge(self, stored: Sequence[bytes | None], rows: npt.NDArray[np.int64]) -> TableRows:
        """The records of ``rows`` with this writer's changes since its base added to the
        ``stored`` records (None: nothing stored yet), column by column as their ``merge``
        says; parameters and counters add up. For a shared table only.

        >>> t = EntityTable(1, 1, 0.0, 0, shared=True)
        >>> row = t.rows_for(["a"])
        >>> t.rows[row] += 1.0                                  # this writer's step: +1
        >>> other = EntityTable(1, 1, 0.0, 0)
        >>> other.rows[other.rows_for(["a"])] += 5.0            # another writer's: +5
        >>> t.synced(t.merge(other.export(row).records, row))
        >>> float(t.rows[row[0], 0])
        6.0
        """
        base = self._base[rows]
        current = self._records(rows)
        out = base.copy()
        present = [n for n, record in enumerate(stored) if record is not None]
        if present:
            out[present] = self._parse([stored[n] or b"" for n in present])
        # Where no other writer changed a row since the base, the result is exactly ours.
        size = self._record.itemsize
        untouched = out.view(np.uint8).reshape(-1, size) == base.view(np.uint8).reshape(-1, size)
        untouched = untouched.all(axis=1)
        untouched[[n for n, record in enumerate(stored) if record is None]] = True
        out["header"]["row"] = rows
        out["header"]["count"] += current["header"]["count"] - base["header"]["count"]
        out["params"] += current["params"] - base["params"]
        for column in self._side_spec:
            name = column.name
            if column.merge == "sum":
                out[name] += current[name] - base[name]
            elif column.merge == "replace":
                changed = (current[name] != base[name]).any(axis=1)
                out[name][changed] = current[name][changed]
            elif column.merge == "neighbours":
                pair = column.pair
                ids, weights = out[name].copy(), out[pair].copy()
                merge_neighbours(
                    np.ascontiguousarray(out[name]),
                    np.ascontiguousarray(out[pair]),
                    np.ascontiguousarray(base[name]),
                    np.ascontiguousarray(base[pair]),
                    np.ascontiguousarray(current[name]),
                    np.ascontiguousarray(current[pair]),
                    ids,
                    weights,
                )
                out[name], out[pair] = ids, weights
        out[untouched] = current[untouched]
        return self._as_rows(rows, out)

    def synced(self, state: TableRows) -> None:
        """These records are what the store now holds for their rows (ids this table
        knows): they become the rows' values and, in a shared table, their base."""
        if not state.ids:
            return
        records = self._parse(state.records)
        self._write(records["header"]["row"].astype(np.int64), records)

    def mark_synced(self, rows: npt.NDArray[np.int64]) -> None:
        """The rows' current values are what the store holds now (a shared table's base)."""
        if self.shared and rows.size:
            self._base[rows] = self._records(rows)

    def _write(self, rows: npt.NDArray[np.int64], records: npt.NDArray[np.void]) -> None:
        self.counts[rows] = records["header"]["count"]
        self.rows[rows] = records["params"]
        for column in self._side_spec:
            self.side[column.name][rows] = records[column.name]
        if self.shared:
            self._base[rows] = records

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
        for column in self._side_spec:
            self.side[column.name][start:stop] = column.fill
        self.mark_synced(np.arange(start, stop, dtype=np.int64))

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
        if self.shared:
            base = np.zeros(capacity, self._record)
            base[: self._base.shape[0]] = self._base
            self._base = base


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
