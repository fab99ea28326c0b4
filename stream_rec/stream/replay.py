"""Write a dataset (or any message iterator) into the events topic, in order."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Protocol

from kafka import KafkaProducer
from kafka.errors import KafkaError

from stream_rec.evaluation.datasets import KeyedMessage
from stream_rec.stream.records import DeliveryFailed

log = logging.getLogger(__name__)

_FLUSH_EVERY = 50_000


class Progress(Protocol):
    """A progress bar (tqdm has this method)."""

    def update(self, n: float | None = 1) -> bool | None: ...


def produce_all(
    producer: KafkaProducer,
    topic: str,
    messages: Iterable[KeyedMessage],
    progress: Progress | None = None,
) -> int:
    """Send every message (key = user id) and wait for all acknowledgements.

    Returns the count; raises :class:`DeliveryFailed` if any send fails, so that a replay
    never ends silently short. ``progress`` is a tqdm-like object with ``update(n)``.
    """
    sent = 0
    failures: list[BaseException] = []
    for message in messages:
        future = producer.send(topic, key=message.key, value=message.value)
        future.add_errback(failures.append)
        sent += 1
        if progress is not None:
            progress.update(1)
        if sent % _FLUSH_EVERY == 0:
            _flush(producer, failures)
    _flush(producer, failures)
    return sent


def _flush(producer: KafkaProducer, failures: list[BaseException]) -> None:
    try:
        producer.flush()
    except KafkaError as exc:
        raise DeliveryFailed(f"flushing the replay failed: {exc}") from exc
    if failures:
        raise DeliveryFailed(f"{len(failures)} messages were not delivered, first: {failures[0]!r}")
