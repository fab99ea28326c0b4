"""What the worker knows of each partition: where to resume, which event ids it has
applied lately, and the epoch of its claim.

The ledger turns those into three guards on every batch: a record below the partition's
committed offset is a replay and is skipped; an event id in the partition's window is a
duplicate and is skipped; the commit carries the claimed epochs, so that it fails if
another worker has claimed a partition since.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from stream_rec.stream.dedup import DedupWindow
from stream_rec.stream.records import SourceRecord


def partition_key(topic: str, partition: int) -> str:
    """The "topic:partition" name under which offsets, windows and epochs are kept.

    >>> partition_key("stream-rec.events", 3)
    'stream-rec.events:3'
    """
    return f"{topic}:{partition}"


@dataclass
class LedgerEntries:
    """The ledger's part of one checkpoint (see :class:`stream_rec.store.Checkpoint`)."""

    offsets: dict[str, int]
    epochs: dict[str, int]
    dedup: dict[str, list[tuple[str, int]]]
    dedup_from: dict[str, int]


@dataclass
class PartitionLedger:
    """Per-partition positions, de-duplication windows and claim epochs."""

    window: int
    next_offsets: dict[str, int] = field(default_factory=dict)
    epochs: dict[str, int] = field(default_factory=dict)
    _windows: dict[str, DedupWindow] = field(default_factory=dict)
    _added: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    _processed: dict[str, int] = field(default_factory=dict)
    """Next offsets of batches applied in memory but not committed yet."""

    def load(
        self, offsets: Mapping[str, int], dedup: Mapping[str, Sequence[tuple[str, int]]]
    ) -> None:
        """Take the committed positions and windows (everything uncommitted is dropped)."""
        self.next_offsets = dict(offsets)
        self._windows = {p: DedupWindow(self.window, entries) for p, entries in dedup.items()}
        self._added.clear()
        self._processed.clear()

    def claimed(self, epochs: Mapping[str, int]) -> None:
        """Record the epochs of freshly claimed partitions."""
        self.epochs.update(epochs)

    def released(self, partitions: Sequence[str]) -> None:
        """Forget the claims of partitions this worker no longer owns."""
        for partition in partitions:
            self.epochs.pop(partition, None)
            self._processed.pop(partition, None)

    def fresh(self, records: Sequence[SourceRecord]) -> list[SourceRecord]:
        """The records not yet applied (offset at or above the partition's next offset,
        counting batches applied but not yet committed)."""
        return [r for r in records if r.offset >= self._next(partition_key(r.topic, r.partition))]

    def _next(self, partition: str) -> int:
        return max(self.next_offsets.get(partition, 0), self._processed.get(partition, 0))

    def processed(self, next_offsets: Mapping[tuple[str, int], int]) -> None:
        """A batch ending at ``next_offsets`` is applied in memory (not committed yet)."""
        for (topic, partition), nxt in next_offsets.items():
            key = partition_key(topic, partition)
            self._processed[key] = max(self._processed.get(key, 0), nxt)

    def first_seen(
        self, partition: str, event_ids: Sequence[str], offsets: Sequence[int]
    ) -> list[int]:
        """The positions of the ids not applied within the window (nor earlier in this
        call), in order; those are now recorded, at their offsets.

        >>> ledger = PartitionLedger(window=10)
        >>> ledger.first_seen("t:0", ["a", "b", "a"], [0, 1, 2])
        [0, 1]
        >>> ledger.first_seen("t:0", ["b", "c"], [3, 4])
        [1]
        """
        if self.window <= 0:
            return list(range(len(event_ids)))
        window = self._windows.get(partition)
        if window is None:
            window = self._windows[partition] = DedupWindow(self.window)
        added = self._added.setdefault(partition, [])
        first: list[int] = []
        for position, (event_id, offset) in enumerate(zip(event_ids, offsets, strict=True)):
            if event_id not in window:
                window.add(event_id, offset)
                added.append((event_id, offset))
                first.append(position)
        return first

    def entries(self, next_offsets: Mapping[str, int]) -> LedgerEntries:
        """The checkpoint's offsets, epochs and window changes for a batch ending at
        ``next_offsets``. Call :meth:`committed` once the checkpoint is written."""
        return LedgerEntries(
            offsets=dict(next_offsets),
            epochs={p: self.epochs[p] for p in next_offsets if p in self.epochs},
            dedup={p: list(self._added.get(p, ())) for p in next_offsets if self._added.get(p)},
            dedup_from={p: nxt - self.window for p, nxt in next_offsets.items() if self.window > 0},
        )

    def committed(self, next_offsets: Mapping[str, int]) -> None:
        """The batch is in the store: move the positions on and slide the windows."""
        for partition, nxt in next_offsets.items():
            self.next_offsets[partition] = max(self.next_offsets.get(partition, 0), nxt)
            window = self._windows.get(partition)
            if window is not None:
                window.slide(nxt)
        self._added.clear()
