"""The wire contract (JSON, UTF-8, one object a message) and strict decoding at the edge.

Every message a worker reads goes through :func:`decode_event` (or
:func:`decode_profile`), which never raises: it returns either the validated message or
a :class:`Rejection` whose ``reason`` is one of :data:`REJECTION_REASONS`. Unknown fields,
wrong types (no coercion: ``"4"`` is not a rating), NaN or infinite numbers, unknown event
types and oversize payloads are all rejected.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Annotated, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

Identifier = Annotated[str, Field(min_length=1, max_length=256)]
FeatureValue = Annotated[str, Field(min_length=1, max_length=256)]
Context = Annotated[
    dict[Annotated[str, Field(min_length=1, max_length=64)], Annotated[str, Field(max_length=256)]],
    Field(max_length=32),
]
Timestamp = Annotated[float, Field(gt=0)]


class _Wire(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False, frozen=True)


class _Interaction(_Wire):
    event_id: Identifier
    user_id: Identifier
    item_id: Identifier
    ts: Timestamp
    """Event time, unix seconds."""
    context: Context | None = None


class ClickEvent(_Interaction):
    type: Literal["click"]


class ImpressionEvent(_Interaction):
    type: Literal["impression"]


class WatchEvent(_Interaction):
    type: Literal["watch"]
    watch_seconds: Annotated[float, Field(ge=0)]
    duration_seconds: Annotated[float, Field(gt=0)] | None = None


class RatingEvent(_Interaction):
    type: Literal["rating"]
    rating: float


Interaction = ClickEvent | ImpressionEvent | WatchEvent | RatingEvent
"""An interaction event of the wire contract, discriminated by ``type``."""


class UserProfile(_Wire):
    type: Literal["user_profile"]
    user_id: Identifier
    features: Annotated[dict[Identifier, FeatureValue | list[FeatureValue]], Field(max_length=64)]


class ItemMetadata(_Wire):
    type: Literal["item_metadata"]
    item_id: Identifier
    features: Annotated[dict[Identifier, FeatureValue | list[FeatureValue]], Field(max_length=64)]
    duration_seconds: Annotated[float, Field(gt=0)] | None = None


Profile = UserProfile | ItemMetadata


class ScoredItem(_Wire):
    item_id: Identifier
    score: float


class RecommendationMessage(_Wire):
    """A published list (key = user_id). ``version`` increases per user."""

    user_id: Identifier
    items: list[ScoredItem]
    version: Annotated[int, Field(ge=1)]
    model: str
    event_ts: float
    """The newest event behind this list (unix seconds)."""
    generated_at: float
    context: Context | None = None
    """The context the list was scored for (that of the newest event), if it had one."""


_INTERACTION = TypeAdapter[Interaction](Annotated[Interaction, Field(discriminator="type")])
_PROFILE = TypeAdapter[Profile](Annotated[Profile, Field(discriminator="type")])

REJECTION_REASONS = (
    "empty",
    "oversize",
    "bad_json",
    "unknown_type",
    "missing_field",
    "unknown_field",
    "wrong_type",
    "not_finite",
    "invalid",
)
"""Every value :attr:`Rejection.reason` can take (a bounded set: it labels a metric)."""

_REASON_OF_ERROR = {
    "json_invalid": "bad_json",
    "json_type": "bad_json",
    "union_tag_invalid": "unknown_type",
    "union_tag_not_found": "missing_field",
    "missing": "missing_field",
    "extra_forbidden": "unknown_field",
    "finite_number": "not_finite",
}


@dataclass(frozen=True)
class Rejection:
    """Why a message was refused: a reason code, a human-readable detail, and the field
    at fault (dotted, as ``context.device``; None where no field is, as for bad JSON)."""

    reason: str
    detail: str
    field: str | None = dataclasses.field(default=None, compare=False, repr=False)


def decode_event(raw: bytes | None, max_bytes: int) -> Interaction | Rejection:
    """Validate one events-topic message; never raises.

    >>> decode_event(b'{"event_id":"e1","type":"click","user_id":"u","item_id":"i","ts":1.5}',
    ...              max_bytes=1024).item_id
    'i'
    >>> decode_event(b'{"event_id":"e2","type":"rating","user_id":"u","item_id":"i","ts":1,'
    ...              b'"rating":NaN}', max_bytes=1024)
    Rejection(reason='not_finite', detail='rating: Input should be a finite number')
    """
    return _decode(_INTERACTION, raw, max_bytes)


def decode_profile(raw: bytes | None, max_bytes: int) -> Profile | Rejection:
    """Validate one profiles-topic message; never raises."""
    return _decode(_PROFILE, raw, max_bytes)


_M = TypeVar("_M")


def _decode(adapter: TypeAdapter[_M], raw: bytes | None, max_bytes: int) -> _M | Rejection:
    if not raw:
        return Rejection("empty", "the message has no value")
    if len(raw) > max_bytes:
        return Rejection("oversize", f"{len(raw)} bytes is over the limit of {max_bytes}")
    try:
        return adapter.validate_json(raw)
    except ValidationError as exc:
        return rejection_of(exc)
    except (ValueError, TypeError, RecursionError) as exc:  # defensive: never raise
        return Rejection("invalid", type(exc).__name__)


def rejection_of(exc: ValidationError) -> Rejection:
    """The rejection for a validation error: its first error, with the field named."""
    error = exc.errors(include_url=False, include_input=False)[0]
    kind = str(error["type"])
    reason = _REASON_OF_ERROR.get(kind)
    if reason is None:
        reason = "wrong_type" if kind.endswith("_type") else "invalid"
    # The first element of a location is the union tag ("rating"); the rest is the field.
    loc = [str(part) for part in error["loc"]]
    name = ".".join(loc[1:] if len(loc) > 1 else loc)
    detail = f"{name}: {error['msg']}" if name else str(error["msg"])
    if not name and kind.startswith("union_tag"):
        name = "type"  # the discriminator itself is missing or unknown
    return Rejection(reason, detail[:500], name[:200] or None)
