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
        """Hash: the schema and record layout, and the model's global state (binary fields)."""
        return f"{self.prefix}:meta"

    def table(self, name: str) -> str:
        """Hash: entity id -> record bytes of model table ``name`` (users, items, ...)."""
        return f"{self.prefix}:t:{name}"

    def registry(self, name: str) -> str:
        """List: the ids of table ``name`` in row order (row r holds element r)."""
        return f"{self.prefix}:reg:{name}"

    def registry_index(self, name: str) -> str:
        """Hash: id -> row of table ``name`` (the registry's index)."""
        return f"{self.prefix}:reg-index:{name}"

    @property
    def generation(self) -> str:
        """String: how many commits the state has taken (a writer in sync with it may write
        shared rows as they are)."""
        return f"{self.prefix}:generation"

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
        """List: the items the user consumed, oldest first (capped)."""
        return f"{self.prefix}:seen:{user_id}"

    def epoch(self, partition: str) -> str:
        """String: the claim counter of "topic:partition" (one key each, so that a claim on
        one partition never fences a commit of another)."""
        return f"{self.prefix}:epoch:{partition}"

    def dedup(self, partition: str) -> str:
        """Sorted set: event ids of the partition's de-duplication window, scored by offset."""
        return f"{self.prefix}:dedup:{partition}"

    def recommendation(self, user_id: str) -> str:
        """String: the user's latest recommendation message (JSON)."""
        return f"{self.prefix}:rec:{user_id}"
