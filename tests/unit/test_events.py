"""Decoding at the edge: valid events pass, every kind of bad input becomes a Rejection."""

from __future__ import annotations

import json

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_rec.events import (
    REJECTION_REASONS,
    ClickEvent,
    ItemMetadata,
    Rejection,
    UserProfile,
    WatchEvent,
    decode_event,
    decode_profile,
)

LIMIT = 65_536
BASE = {"event_id": "e1", "user_id": "u1", "item_id": "i1", "ts": 1_700_000_000.5}


def _raw(**fields: object) -> bytes:
    return orjson.dumps(BASE | fields)


def test_each_event_type_decodes() -> None:
    assert isinstance(decode_event(_raw(type="click"), LIMIT), ClickEvent)
    watch = decode_event(_raw(type="watch", watch_seconds=30, duration_seconds=600.0), LIMIT)
    assert isinstance(watch, WatchEvent)
    assert watch.watch_seconds == 30.0
    rating = decode_event(_raw(type="rating", rating=4.5), LIMIT)
    assert not isinstance(rating, Rejection)
    assert rating.type == "rating"
    impression = decode_event(_raw(type="impression", context={"device": "tv"}), LIMIT)
    assert not isinstance(impression, Rejection)
    assert impression.context == {"device": "tv"}


@pytest.mark.parametrize(
    ("raw", "reason", "field"),
    [
        (b"", "empty", ""),
        (b"{not json", "bad_json", ""),
        (_raw(type="purchase"), "unknown_type", ""),
        (
            orjson.dumps({"event_id": "e", "user_id": "u", "item_id": "i", "ts": 1.0}),
            "missing_field",
            "",
        ),
        (_raw(type="rating"), "missing_field", "rating"),
        (_raw(type="click", rating=5), "unknown_field", "rating"),
        (_raw(type="click", colour="red"), "unknown_field", "colour"),
        (_raw(type="rating", rating="5"), "wrong_type", "rating"),
        (_raw(type="click", user_id=17), "wrong_type", "user_id"),
        (
            b'{"event_id":"e","type":"rating","user_id":"u","item_id":"i","ts":1,"rating":NaN}',
            "not_finite",
            "rating",
        ),
        (
            b'{"event_id":"e","type":"rating","user_id":"u","item_id":"i","ts":1,"rating":Infinity}',
            "not_finite",
            "rating",
        ),
        (_raw(type="watch", watch_seconds=-1), "invalid", "watch_seconds"),
        (_raw(type="click", user_id=""), "invalid", "user_id"),
        (_raw(type="click", ts=-5), "invalid", "ts"),
        (b"[1, 2]", "wrong_type", ""),
        (_raw(type="click", context={"k": 1}), "wrong_type", "context"),
    ],
)
def test_bad_events_are_rejected_with_reason_and_field(raw: bytes, reason: str, field: str) -> None:
    result = decode_event(raw, LIMIT)
    assert isinstance(result, Rejection), result
    assert result.reason == reason, result
    assert field in result.detail
    assert (result.field or "").startswith(field), result.field


def test_a_rejection_names_the_field_at_fault() -> None:
    """The API answers 422 naming this field; None where the body itself is bad."""
    fields = [
        decode_event(raw, LIMIT).field  # type: ignore[union-attr]  # a Rejection here
        for raw in (
            _raw(type="purchase"),
            orjson.dumps({"event_id": "e", "user_id": "u", "item_id": "i", "ts": 1.0}),
            _raw(type="click", context={"device": 1}),
            _raw(type="rating", rating="5"),
            b"{not json",
            b"",
        )
    ]
    assert fields == ["type", "type", "context.device", "rating", None, None]


def test_oversize_is_rejected_before_parsing() -> None:
    result = decode_event(_raw(type="click") + b" " * LIMIT, LIMIT)
    assert isinstance(result, Rejection)
    assert result.reason == "oversize"


def test_profiles_decode_and_reject() -> None:
    user = decode_profile(
        orjson.dumps(
            {
                "type": "user_profile",
                "user_id": "u1",
                "features": {"age": "25-34", "genres": ["a", "b"]},
            }
        ),
        LIMIT,
    )
    assert isinstance(user, UserProfile)
    item = decode_profile(
        orjson.dumps(
            {
                "type": "item_metadata",
                "item_id": "i1",
                "features": {"genre": ["drama"]},
                "duration_seconds": 60,
            }
        ),
        LIMIT,
    )
    assert isinstance(item, ItemMetadata)
    assert item.duration_seconds == 60.0
    bad = decode_profile(
        orjson.dumps({"type": "user_profile", "user_id": "u1", "features": {"x": 3}}), LIMIT
    )
    assert isinstance(bad, Rejection)
    assert bad.reason == "wrong_type"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_decoder_never_raises_on_arbitrary_bytes(raw: bytes) -> None:
    result = decode_event(raw, 200)
    if isinstance(result, Rejection):
        assert result.reason in REJECTION_REASONS


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "event_id",
                "type",
                "user_id",
                "item_id",
                "ts",
                "rating",
                "watch_seconds",
                "context",
                "extra",
            ]
        ),
        st.one_of(
            st.none(),
            st.integers(-(2**63), 2**63 - 1),
            st.floats(),
            st.text(max_size=5),
            st.lists(st.integers(), max_size=2),
        ),
        max_size=9,
    )
)
def test_decoder_never_raises_on_arbitrary_objects(obj: dict[str, object]) -> None:
    raw = json.dumps(obj).encode()  # json (not orjson) writes NaN and Infinity as they are
    result = decode_event(raw, LIMIT)
    assert isinstance(result, Rejection) or result.user_id
