"""De-duplication by event id, over a window of each partition's latest offsets.

Producers that retry may write an event twice (with the same event_id, at a new offset);
an event id seen among the partition's last ``size`` offsets is not applied again. Events
are keyed by user, so a duplicate lands in the same partition as its original.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable


class DedupWindow:
    """The event ids at a partition's offsets ``[next - size, next)``.

    >>> window = DedupWindow(size=2)
    >>> window.add("a", 0); window.add("b", 1)
    >>> "a" in window, "c" in window
    (True, False)
    >>> window.slide(next_offset=3)  # keeps offsets 1 and 2 only
    >>> "a" in window
    False
    """

    def __init__(self, size: int, entries: Iterable[tuple[str, int]] = ()) -> None:
        self.size = size
        self._offset_of: dict[str, int] = {}
        self._order: deque[tuple[int, str]] = deque()
        for event_id, offset in sorted(entries, key=lambda entry: entry[1]):
            self.add(event_id, offset)

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._offset_of

    def __len__(self) -> int:
        return len(self._offset_of)

    def add(self, event_id: str, offset: int) -> None:
        """Remember ``event_id`` as applied at ``offset``."""
        self._offset_of[event_id] = offset
        self._order.append((offset, event_id))

    def lowest(self, next_offset: int) -> int:
        """The lowest offset the window keeps once the partition is at ``next_offset``."""
        return next_offset - self.size

    def slide(self, next_offset: int) -> None:
        """Forget the ids at offsets below ``next_offset - size``."""
        lowest = self.lowest(next_offset)
        order = self._order
        while order and order[0][0] < lowest:
            offset, event_id = order.popleft()
            if self._offset_of.get(event_id) == offset:
                del self._offset_of[event_id]
