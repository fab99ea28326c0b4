"""Names of the Redis keys that hold one deployment's state (all under one prefix)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class KeySpace:
    """Key names under ``prefix``.

    >>> KeySpace("sr").seen("u1")
    'sr:seen:u1'
    """

    prefix: str

    @property
    def meta(self) -> str:
        """Hash: row widths, the rating sum and count, the schema version."""
        return f"{self.prefix}:meta"

    @property
    def users(self) -> str:
        """Hash: user id -> float32 row bytes (vector, then bias)."""
        return f"{self.prefix}:users"

    @property
    def items(self) -> str:
        """Hash: item id -> float32 row bytes (vector, then biases)."""
        return f"{self.prefix}:items"

    @property
    def user_events(self) -> str:
        """Hash: user id -> events applied (the exactly-once checker's counters)."""
        return f"{self.prefix}:user-events"

    @property
    def item_events(self) -> str:
        """Hash: item id -> events applied (also the item's popularity)."""
        return f"{self.prefix}:item-events"

    @property
    def versions(self) -> str:
        """Hash: user id -> version of the user's latest published list."""
        return f"{self.prefix}:versions"

    @property
    def offsets(self) -> str:
        """Hash: "topic:partition" -> next offset to apply."""
        return f"{self.prefix}:offsets"

    def seen(self, user_id: str) -> str:
        """Set: items the user consumed."""
        return f"{self.prefix}:seen:{user_id}"

    def recommendation(self, user_id: str) -> str:
        """String: the user's latest recommendation message (JSON)."""
        return f"{self.prefix}:rec:{user_id}"
