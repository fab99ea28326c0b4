"""The API's in-process parts without services: the lists cache, panel points, bodies."""

from __future__ import annotations

import asyncio

import orjson

from stream_rec.api.ingest import Refusal, validate_body
from stream_rec.api.lists import CachedList, ListCache
from stream_rec.api.live import LiveHub, PanelHistory


def _entry(user: str, version: int, generated_at: float = 100.0) -> CachedList:
    body = orjson.dumps(
        {
            "user_id": user,
            "items": [],
            "version": version,
            "model": "m",
            "event_ts": 1.0,
            "generated_at": generated_at,
        }
    )
    entry = CachedList.parse(body)
    assert entry is not None
    return entry


def test_the_cache_keeps_the_newest_version_and_evicts_the_least_recently_updated() -> None:
    cache = ListCache(max_lists=2)
    assert cache.offer(_entry("a", 2))
    assert not cache.offer(_entry("a", 1)), "an older list (a replay) must not win"
    assert not cache.offer(_entry("a", 2)), "the same version again is no news"
    assert cache.offer(_entry("b", 1))
    assert cache.offer(_entry("a", 3))
    assert cache.offer(_entry("c", 1))  # evicts b, updated longest ago
    assert cache.get("b") is None
    assert [cache.get(u).version for u in ("a", "c")] == [3, 1]  # type: ignore[union-attr]  # both are cached
    assert cache.recent_users(5) == ["c", "a"]


def test_cached_lists_expire_as_the_stored_ones_do() -> None:
    cache = ListCache(max_lists=10, ttl_seconds=60)
    cache.offer(_entry("a", 1, generated_at=1_000.0))
    assert cache.get("a", now=1_059.0) is not None
    assert cache.get("a", now=1_061.0) is None


def test_the_panel_computes_events_per_second_between_snapshots() -> None:
    panel = PanelHistory()

    def snapshot(t: float, applied: float) -> dict[str, object]:
        return {
            "worker": "w1",
            "generated_at": t,
            "freshness_p50_s": 0.1,
            "freshness_p99_s": 0.4,
            "metrics": {
                "stream_rec_events_applied_total": {
                    "type=click": applied / 2,
                    "type=watch": applied / 2,
                },
                "stream_rec_online_hit_ratio": 0.2,
                "stream_rec_newest_event_timestamp_seconds": 5.0,
                "stream_rec_newest_event_age_seconds": 0.5,
            },
        }

    first = panel.offer(snapshot(10.0, 100.0))
    assert first is not None and first["events_per_s"] is None
    second = panel.offer(snapshot(12.0, 700.0))
    assert second is not None and second["events_per_s"] == 300.0
    assert (second["freshness_p99_s"], second["hit_ratio"], second["applied_events"]) == (
        0.4,
        0.2,
        700.0,
    )
    assert panel.offer(snapshot(11.0, 800.0)) is None, "an older snapshot read again"
    assert panel.newest_event_age(now=13.0) == 1.5  # 0.5 s at the snapshot, 1 s since
    restarted = panel.offer(snapshot(14.0, 50.0))
    assert restarted is not None and restarted["events_per_s"] == 0.0


def test_the_hub_gives_a_slow_stream_only_the_newest_list() -> None:
    async def scenario() -> None:
        hub = LiveHub()
        subscription = hub.subscribe_user("a")
        hub.publish_lists([_entry("a", 1), _entry("b", 9), _entry("a", 3), _entry("a", 2)])
        assert subscription.changed.is_set()
        taken = subscription.take_list()
        assert taken is not None and taken.version == 3
        assert not subscription.changed.is_set()
        hub.unsubscribe(subscription)
        assert len(hub) == 0

    asyncio.run(scenario())


def test_one_bad_message_refuses_the_whole_body() -> None:
    good = {"event_id": "e", "type": "click", "user_id": "u", "item_id": "i", "ts": 1.0}
    ok = validate_body(orjson.dumps([good, good | {"user_id": "v"}]), "events", 1024)
    assert isinstance(ok, list) and [m.key for m in ok] == [b"u", b"v"]
    refused = validate_body(orjson.dumps([good, good | {"ts": "now"}]), "events", 1024)
    assert isinstance(refused, Refusal)
    assert (refused.index, refused.rejection.field, refused.rejection.reason) == (
        1,
        "ts",
        "wrong_type",
    )
    assert isinstance(validate_body(b"[]", "events", 1024), Refusal)
    big = validate_body(orjson.dumps(good | {"item_id": "x" * 200}), "events", 128)
    assert isinstance(big, Refusal) and big.rejection.reason == "oversize"
    profile = {"type": "item_metadata", "item_id": "i9", "features": {"genre": ["a", "b"]}}
    keyed = validate_body(orjson.dumps(profile), "profiles", 1024)
    assert isinstance(keyed, list) and keyed[0].key == b"i9"
    assert keyed[0].value == orjson.dumps(profile), "a single message is produced as sent"
