"""Names of the Redis keys that hold one deployment's state (all under one prefix), laid
out for Redis Cluster as much as for one server.

A Redis Cluster transaction (MULTI/EXEC, WATCH, a script) may only touch keys of one hash
slot, and a key's slot is that of its hash tag (the part in braces). So:

- the *shared tag* ``{prefix}`` holds what one commit must change atomically: the shared
  model tables (items, feature tokens) and their counters, the globals, the registry, the
  generation, the partitions' offsets, epochs and de-duplication windows - and the
  *outbox* of each user shard, where a commit leaves its users' changes;
- the users (the bulk of the state) are spread over :data:`USER_SHARDS` shard tags
  ``{prefix:u<n>.<salt>}`` by a hash of the user id: each shard holds its users' records,
  counters, versions, seen lists and latest lists, and the generation of the last outbox
  entry applied to it (its watermark), so that applying an entry twice changes nothing.
  Shard n's salt is the first that puts its tag near the middle of the n-th sixteenth
  of the 16,384 hash slots, so that a cluster whose nodes hold equal ranges of slots (as
  ``redis-cli --cluster create`` makes them) holds as equal shares of the users as 16
  shards allow (5, 6 and 5 of them on 3 nodes).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from functools import cache

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

USER_SHARDS = 16
"""User shards (hash tags) of a deployment: at most this many cluster nodes share the
users. Part of the stored layout: changing it needs a new key prefix."""


def user_shard(user_id: str) -> int:
    """The shard of ``user_id`` (CRC-32 of its UTF-8 bytes, modulo :data:`USER_SHARDS`).

    >>> user_shard("u1")
    6
    """
    return zlib.crc32(user_id.encode()) % USER_SHARDS


@cache
def shard_tags(prefix: str) -> tuple[str, ...]:
    """The hash tags (with their braces) of ``prefix``'s user shards: shard n's lies near
    the middle of the n-th 1/:data:`USER_SHARDS` of the hash slots.

    >>> [key_slot(tag.encode()) * USER_SHARDS // REDIS_CLUSTER_HASH_SLOTS
    ...  for tag in shard_tags("sr")] == list(range(USER_SHARDS))
    True
    """
    width = REDIS_CLUSTER_HASH_SLOTS // USER_SHARDS
    tags = []
    for shard in range(USER_SHARDS):
        middle = shard * width + width // 2
        salt = 0
        while abs(key_slot(f"{prefix}:u{shard}.{salt}".encode()) - middle) > width // 32:
            salt += 1
        tags.append(f"{{{prefix}:u{shard}.{salt}}}")
    return tuple(tags)


@dataclass(frozen=True)
class KeySpace:
    """Key names under ``prefix``.

    >>> KeySpace("sr").meta
    '{sr}:meta'
    >>> KeySpace("sr").seen("u1")
    '{sr:u6.167}:seen:u1'
    """

    prefix: str

    @property
    def shared(self) -> str:
        """The shared hash tag (with its braces): every key a commit changes at once."""
        return f"{{{self.prefix}}}"

    def shard(self, shard: int) -> str:
        """The hash tag of user shard ``shard`` (with its braces)."""
        return shard_tags(self.prefix)[shard]

    # -- under the shared tag --------------------------------------------------------
    @property
    def meta(self) -> str:
        """Hash: the schema and record layout, and the model's global state (binary fields)."""
        return f"{self.shared}:meta"

    def table(self, name: str) -> str:
        """Hash: entity id -> record bytes of shared model table ``name`` (items, ...)."""
        return f"{self.shared}:t:{name}"

    def registry(self, name: str) -> str:
        """List: the ids of table ``name`` in row order (row r holds element r)."""
        return f"{self.shared}:reg:{name}"

    def registry_index(self, name: str) -> str:
        """Hash: id -> row of table ``name`` (the registry's index)."""
        return f"{self.shared}:reg-index:{name}"

    @property
    def generation(self) -> str:
        """String: how many commits the state has taken (a writer in sync with it may write
        shared rows as they are; an outbox entry is numbered by its commit's generation)."""
        return f"{self.shared}:generation"

    @property
    def item_events(self) -> str:
        """Hash: item id -> events applied (also the item's popularity)."""
        return f"{self.shared}:item-events"

    @property
    def offsets(self) -> str:
        """Hash: "topic:partition" -> next offset to apply."""
        return f"{self.shared}:offsets"

    def epoch(self, partition: str) -> str:
        """String: the claim counter of "topic:partition" (one key each, so that a claim on
        one partition never fences a commit of another)."""
        return f"{self.shared}:epoch:{partition}"

    def dedup(self, partition: str) -> str:
        """Sorted set: event ids of the partition's de-duplication window, scored by offset."""
        return f"{self.shared}:dedup:{partition}"

    def outbox(self, shard: int) -> str:
        """Sorted set: the users' changes committed for ``shard`` and not yet known to be
        applied there, each scored by its commit's generation."""
        return f"{self.shared}:outbox:{shard}"

    # -- under a user shard's tag -----------------------------------------------------
    def users(self, shard: int) -> str:
        """Hash: user id -> record bytes, of the shard's users."""
        return f"{self.shard(shard)}:t:users"

    def user_events(self, shard: int) -> str:
        """Hash: user id -> events applied (the exactly-once checker's counters)."""
        return f"{self.shard(shard)}:user-events"

    def versions(self, shard: int) -> str:
        """Hash: user id -> version of the user's latest published list."""
        return f"{self.shard(shard)}:versions"

    def applied(self, shard: int) -> str:
        """String: the generation of the last outbox entry applied to the shard."""
        return f"{self.shard(shard)}:applied"

    def seen(self, user_id: str) -> str:
        """List: the items the user consumed, oldest first (capped)."""
        return f"{self.shard(user_shard(user_id))}:seen:{user_id}"

    def recommendation(self, user_id: str) -> str:
        """String: the user's latest recommendation message (JSON)."""
        return f"{self.shard(user_shard(user_id))}:rec:{user_id}"
