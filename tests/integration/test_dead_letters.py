"""Bad messages go to the dead-letter topic with their reason; good ones around them apply."""

from __future__ import annotations

import orjson
import pytest

from stream_rec.config import Settings
from stream_rec.stream.processor import DETAIL_HEADER, REASON_HEADER, SOURCE_HEADER
from tests.integration.support import (
    open_store,
    produce_events,
    read_topic,
    running_worker,
    wait_for,
)

pytestmark = pytest.mark.integration


def _good(n: int) -> dict[str, object]:
    return {
        "event_id": f"good-{n}",
        "type": "click",
        "user_id": f"u{n % 7}",
        "item_id": f"i{n % 11}",
        "ts": 1_700_000_000.0 + n,
    }


BAD = {
    "bad_json": b'{"event_id": "x", "type": "click", ',
    "unknown_type": orjson.dumps(
        {"event_id": "b1", "type": "purchase", "user_id": "u1", "item_id": "i1", "ts": 1.7e9}
    ),
    "missing_field": orjson.dumps(
        {"event_id": "b2", "type": "click", "user_id": "u1", "ts": 1.7e9}
    ),
    "not_finite": b'{"event_id":"b3","type":"rating","user_id":"u1","item_id":"i1","ts":1.7e9,'
    b'"rating":NaN}',
    "oversize": orjson.dumps(
        {
            "event_id": "b4",
            "type": "click",
            "user_id": "u1",
            "item_id": "i1",
            "ts": 1.7e9,
            "context": {"blob": "x" * 200},
        }
    )
    + b" " * (2 * 1024 * 1024),
}


def test_each_bad_message_lands_in_the_dead_letter_topic_with_its_reason(
    settings: Settings,
) -> None:
    stream: list[dict[str, object] | bytes] = []
    good = 0
    for reason, payload in BAD.items():
        for _ in range(3):
            stream.append(_good(good))
            good += 1
        stream.append(payload)
        del reason
    for _ in range(3):
        stream.append(_good(good))
        good += 1
    produce_events(settings, stream)

    with running_worker(settings) as worker, open_store(settings) as store:
        wait_for(lambda: store.stats().applied_events == good, 60, "every good event applied")
        dead = read_topic(settings, settings.topics.dead_letter)
        assert not worker.stop_event.is_set(), "the worker kept running"
        # A later good event is still applied: the worker did not stop at the bad ones.
        produce_events(settings, [_good(1000)])
        wait_for(lambda: store.stats().applied_events == good + 1, 30, "a later event applied")

    by_reason = {}
    for record in dead:
        headers = dict(record.headers)
        by_reason[headers[REASON_HEADER].decode()] = record
        assert headers[DETAIL_HEADER]
        assert headers[SOURCE_HEADER].decode().startswith(f"{settings.topics.events}:")
    assert set(by_reason) == set(BAD), f"reasons seen: {sorted(by_reason)}"
    for reason, payload in BAD.items():
        assert by_reason[reason].value == payload, f"{reason}: the payload must be kept as it was"
    detail = dict(by_reason["not_finite"].headers)[DETAIL_HEADER].decode()
    assert "rating" in detail
