"""What the worker reads and writes, as protocols, with an in-memory twin of the sink."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

Headers = Sequence[tuple[str, bytes]]


class SourceRecord(Protocol):
    """A consumed message: kafka-python's ConsumerRecord has these attributes."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def timestamp(self) -> int:
        """Milliseconds since the epoch (the producer's send time by default)."""

    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...


class RecordSink(Protocol):
    """Where the worker's output records go (a Kafka producer, or a list in tests)."""

    def send(
        self, topic: str, key: bytes | None, value: bytes | None, headers: Headers = ()
    ) -> None:
        """Queue one record; delivery is only guaranteed after :meth:`flush` returns."""

    def flush(self) -> None:
        """Wait until every queued record is acknowledged; raise if any failed."""


class DeliveryFailed(Exception):
    """A record could not be delivered; the worker must stop rather than drop it."""


@dataclass(frozen=True)
class Record:
    """A plain record: a consumed message in tests, or a sent one in :class:`MemorySink`."""

    topic: str
    key: bytes | None
    value: bytes | None
    partition: int = 0
    offset: int = 0
    timestamp: int = 0
    headers: Headers = ()


@dataclass
class MemorySink:
    """The in-memory twin of the Kafka sink: records land in ``sent`` on flush."""

    sent: list[Record] = field(default_factory=list)
    pending: list[Record] = field(default_factory=list)
    fail_next_flush: bool = False

    def send(
        self, topic: str, key: bytes | None, value: bytes | None, headers: Headers = ()
    ) -> None:
        self.pending.append(Record(topic, key, value, headers=tuple(headers)))

    def flush(self) -> None:
        if self.fail_next_flush:
            self.fail_next_flush = False
            raise DeliveryFailed("memory sink told to fail")
        self.sent.extend(self.pending)
        self.pending.clear()

    def on(self, topic: str) -> list[Record]:
        """Records delivered to ``topic``, in order."""
        return [r for r in self.sent if r.topic == topic]
