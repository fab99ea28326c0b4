"""POSTed events and profiles: size limit, bearer token, the worker's decoders, Kafka.

A body is one message of the wire contract or a JSON array of them. Every message is
validated with the decoder the worker applies to the topic (:func:`~stream_rec.events.
decode_event` / :func:`~stream_rec.events.decode_profile`); one invalid message refuses
the whole request, so that nothing of it is produced. Valid messages are produced, keyed
as the worker expects, through an idempotent producer (acks=all), and the answer waits
for Kafka's acknowledgement. A retried request is safe: the worker skips an event id it
applied within its de-duplication window.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from kafka import KafkaProducer
from kafka.errors import KafkaError

from stream_rec.events import Rejection, decode_event, decode_profile

Kind = Literal["events", "profiles"]

_DECODERS: dict[Kind, Callable[[bytes | None, int], Any]] = {
    "events": decode_event,
    "profiles": decode_profile,
}


@dataclass(frozen=True)
class Refusal:
    """Why a body was refused: the first bad message's index (None for the body itself)
    and its :class:`~stream_rec.events.Rejection`."""

    index: int | None
    rejection: Rejection

    def as_json(self, kind: Kind) -> dict[str, Any]:
        return {
            "error": "invalid_event" if kind == "events" else "invalid_profile",
            "index": self.index,
            "field": self.rejection.field,
            "reason": self.rejection.reason,
            "detail": self.rejection.detail,
        }


@dataclass(frozen=True)
class Message:
    """A validated message, as it will be produced."""

    key: bytes
    value: bytes


class DeliveryFailed(RuntimeError):
    """Kafka did not acknowledge every message of a request (some may have been written)."""


def authorized(header: str | None, token: str | None) -> bool:
    """Whether an Authorization header carries the bearer token (any header when no token
    is set). Compared in constant time.

    >>> authorized("Bearer s3cret-s3cret-s3cret", "s3cret-s3cret-s3cret")
    True
    >>> authorized("Bearer guess", "s3cret-s3cret-s3cret"), authorized(None, None)
    (False, True)
    """
    if token is None:
        return True
    if header is None:
        return False
    return hmac.compare_digest(header.encode(), f"Bearer {token}".encode())


def validate_body(body: bytes, kind: Kind, max_message_bytes: int) -> list[Message] | Refusal:
    """The body's messages, each validated by the worker's decoder; or the first refusal.

    >>> validate_body(b'{"event_id":"e","type":"click","user_id":"u","item_id":"i","ts":1}',
    ...               "events", 1024)[0].key
    b'u'
    >>> validate_body(b'[{"type":"click"}]', "events", 1024).rejection.field
    'event_id'
    """
    decode = _DECODERS[kind]
    stripped = body.lstrip()
    if not stripped.startswith(b"["):
        # One message: the very bytes the worker will read.
        return _checked(decode(body, max_message_bytes), body, None)
    try:
        # The standard library reads NaN and Infinity, so that they are refused as the
        # worker refuses them (not_finite), not as bad JSON.
        elements = json.loads(body)
    except (ValueError, RecursionError) as exc:
        return Refusal(None, Rejection("bad_json", f"the body is not JSON: {exc}"[:500]))
    if not elements:
        return Refusal(None, Rejection("empty", "the array holds no message"))
    messages: list[Message] = []
    for index, element in enumerate(elements):
        raw = json.dumps(element, ensure_ascii=False, separators=(",", ":")).encode()
        checked = _checked(decode(raw, max_message_bytes), raw, index)
        if isinstance(checked, Refusal):
            return checked
        messages += checked
    return messages


def _checked(decoded: Any, raw: bytes, index: int | None) -> list[Message] | Refusal:
    if isinstance(decoded, Rejection):
        return Refusal(index, decoded)
    key = getattr(decoded, "user_id", None) or decoded.item_id
    return [Message(str(key).encode(), raw)]


def produce(
    producer: KafkaProducer, topic: str, messages: Sequence[Message], timeout: float
) -> None:
    """Send ``messages`` in order and wait for every acknowledgement (blocking: run it in a
    worker thread). Raises :class:`DeliveryFailed` if any is not acknowledged in time."""
    try:
        futures = [producer.send(topic, key=m.key, value=m.value) for m in messages]
        producer.flush(timeout)
        for future in futures:
            future.get(timeout=timeout)
    except KafkaError as exc:
        raise DeliveryFailed(f"Kafka did not acknowledge the messages: {exc}") from exc
