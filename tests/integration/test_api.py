"""The HTTP API against the real server, a real worker, Kafka and Redis (no mocks)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from openapi_spec_validator import validate

from stream_rec.api.app import create_app
from stream_rec.api.server import ApiServer
from stream_rec.config import Settings
from stream_rec.evaluation.synthetic import SyntheticWorld
from stream_rec.services import free_port
from tests.integration.api_support import EventStream, call, serving, with_http
from tests.integration.support import open_store, read_topic, settings_for, wait_for

pytestmark = pytest.mark.integration

WORLD = SyntheticWorld.create(n_users=60, n_items=120, seed=5)


@pytest.fixture(scope="module")
def api_settings(kafka_server: Any, redis_server: Any) -> Settings:
    name = f"t-api-{uuid.uuid4().hex[:8]}"
    base = settings_for(kafka_server.bootstrap, redis_server.url, name, kafka_server.flavor)
    return with_http(base)


@pytest.fixture(scope="module")
def api(api_settings: Settings) -> Iterator[str]:
    """One worker and one server for the module; 3,000 events POSTed through the API."""
    with serving(api_settings) as url:
        events = list(WORLD.events(3_000))
        for start in range(0, len(events), 500):
            answer = call(f"{url}/v1/events", "POST", events[start : start + 500])
            assert answer.status == 202, answer.body
            assert answer.body == {"accepted": 500}
        with open_store(api_settings) as store:
            wait_for(lambda: store.stats().applied_events == 3_000, 90, "the events applied")
        yield url


def _click(user: str, item: str) -> dict[str, Any]:
    return {
        "event_id": f"click-{uuid.uuid4().hex}",
        "type": "click",
        "user_id": user,
        "item_id": item,
        "ts": 1_800_000_000.0,
    }


def test_the_list_after_posted_clicks_excludes_the_clicked_items(
    api: str, api_settings: Settings
) -> None:
    before = call(f"{api}/v1/recommendations/u3")
    assert before.status == 200
    assert before.body["user_id"] == "u3" and len(before.body["items"]) == 10
    clicked = [entry["item_id"] for entry in before.body["items"][:3]]

    answer = call(f"{api}/v1/events", "POST", [_click("u3", item) for item in clicked])
    assert answer.status == 202 and answer.body == {"accepted": 3}

    def changed() -> bool:
        now = call(f"{api}/v1/recommendations/u3").body
        return bool(now["version"] >= before.body["version"] + 3)

    wait_for(changed, 30, "a list with the three clicks applied")
    after = call(f"{api}/v1/recommendations/u3").body
    assert not set(clicked) & {entry["item_id"] for entry in after["items"]}
    assert len(after["items"]) == 10
    # What the API serves (from its memory) is what the worker stored in Redis.
    with open_store(api_settings) as store:
        wait_for(
            lambda: call(f"{api}/v1/recommendations/u3").body == _stored(store, "u3"),
            10,
            "the served list equal to the stored one",
        )


def _stored(store: Any, user: str) -> Any:
    import orjson

    raw = store.recommendation(user)
    return None if raw is None else orjson.loads(raw)


def test_k_returns_the_head_of_the_list_and_unknown_parameters_are_refused(api: str) -> None:
    full = call(f"{api}/v1/recommendations/u4").body
    head = call(f"{api}/v1/recommendations/u4?k=3").body
    assert head["items"] == full["items"][:3]
    assert {k: v for k, v in head.items() if k != "items"} == {
        k: v for k, v in full.items() if k != "items"
    }
    for query, word in (("k=0", "k must"), ("k=x", "k must"), ("context.device=tv", "context")):
        answer = call(f"{api}/v1/recommendations/u4?{query}")
        assert answer.status == 400 and word in answer.body["detail"], (query, answer.body)


def test_an_unknown_user_gets_404_with_a_reason(api: str) -> None:
    answer = call(f"{api}/v1/recommendations/nobody-{uuid.uuid4().hex[:6]}")
    assert answer.status == 404
    assert answer.body["error"] == "unknown_user"
    assert "no list for user" in answer.body["detail"]
    assert answer.headers["content-type"] == "application/json"


def test_a_bad_event_gets_422_naming_its_field_and_nothing_of_the_request_is_produced(
    kafka_server: Any, redis_server: Any
) -> None:
    # A server of its own (no worker): its events topic must hold exactly what it produced.
    name = f"t-api-bad-{uuid.uuid4().hex[:8]}"
    settings = with_http(
        settings_for(kafka_server.bootstrap, redis_server.url, name, kafka_server.flavor)
    )
    good = _click("u1", "i1")
    bad_rating = {**_click("u1", "i2"), "type": "rating", "rating": "4"}
    cases = [
        ([good, bad_rating], 1, "rating", "wrong_type"),
        ([good, {**good, "colour": "red"}], 1, "colour", "unknown_field"),
        ({**good, "type": "purchase"}, None, "type", "unknown_type"),
        ([good, {k: v for k, v in good.items() if k != "ts"}], 1, "ts", "missing_field"),
        ([good, {**good, "context": {"device": 3}}], 1, "context.device", "wrong_type"),
    ]
    with ApiServer(settings) as server:
        url = server.url
        for body, index, field, reason in cases:
            answer = call(f"{url}/v1/events", "POST", body)
            assert answer.status == 422, (body, answer.body)
            assert answer.body["error"] == "invalid_event"
            assert (answer.body["index"], answer.body["field"], answer.body["reason"]) == (
                index,
                field,
                reason,
            ), answer.body
        nan = b'[{"event_id":"n","type":"rating","user_id":"u","item_id":"i","ts":1,"rating":NaN}]'
        answer = call(f"{url}/v1/events", "POST", raw=nan)
        assert (answer.status, answer.body["reason"], answer.body["field"]) == (
            422,
            "not_finite",
            "rating",
        )
        answer = call(f"{url}/v1/events", "POST", raw=b'{"event_id": ')
        assert (answer.status, answer.body["reason"], answer.body["field"]) == (
            422,
            "bad_json",
            None,
        )
        profile = {"type": "user_profile", "user_id": "u1", "features": {"age": 30}}
        answer = call(f"{url}/v1/profiles", "POST", profile)
        assert answer.status == 422, answer.body
        assert answer.body["field"].startswith("features.age"), answer.body
        metrics = call(f"{url}/metrics").body
    assert read_topic(settings, settings.topics.events) == []
    assert read_topic(settings, settings.topics.profiles) == []
    assert _sample(metrics, 'stream_rec_http_bad_requests_total{reason="invalid_event"}') == 7
    assert _sample(metrics, 'stream_rec_http_bad_requests_total{reason="invalid_profile"}') == 1


def _sample(text: str, series: str) -> float:
    match = re.search(rf"^{re.escape(series)} ([0-9.e+-]+)$", text, re.MULTILINE)
    assert match, f"{series} is not exported"
    return float(match.group(1))


def test_a_token_guards_the_posts_and_big_bodies_get_413(
    kafka_server: Any, redis_server: Any
) -> None:
    name = f"t-api-token-{uuid.uuid4().hex[:8]}"
    token = "a-long-test-token-" + uuid.uuid4().hex
    settings = with_http(
        settings_for(kafka_server.bootstrap, redis_server.url, name, kafka_server.flavor),
        token=token,
        max_body_bytes=4096,
    )
    event = _click("u1", "i1")
    with ApiServer(settings) as server:
        url = f"{server.url}/v1/events"
        missing = call(url, "POST", event)
        assert missing.status == 401 and missing.headers["www-authenticate"] == "Bearer"
        wrong = call(url, "POST", event, headers={"Authorization": "Bearer " + "x" * 50})
        assert wrong.status == 401
        right = call(url, "POST", event, headers={"Authorization": f"Bearer {token}"})
        assert right.status == 202, right.body
        big = [_click("u1", f"i{n}") for n in range(100)]
        too_big = call(url, "POST", big, headers={"Authorization": f"Bearer {token}"})
        assert too_big.status == 413 and too_big.body["error"] == "too_large"
        form = call(
            url,
            "POST",
            raw=b"a=1",
            headers={"Authorization": f"Bearer {token}", "Content-Type": "text/plain"},
        )
        assert form.status == 415
        # GETs stay open: the token guards writes.
        assert call(f"{server.url}/v1/health").status == 200
        metrics = call(f"{server.url}/metrics").body
    assert _sample(metrics, 'stream_rec_http_bad_requests_total{reason="unauthorized"}') == 2
    assert _sample(metrics, 'stream_rec_http_bad_requests_total{reason="too_large"}') == 1
    assert _sample(metrics, 'stream_rec_http_messages_produced_total{kind="events"}') == 1
    assert len(read_topic(settings, settings.topics.events)) == 1


def test_health_reports_the_services_and_the_newest_event_age(api: str) -> None:
    def snapshot_seen() -> bool:
        return call(f"{api}/v1/health").body["newest_event_age_seconds"] is not None

    wait_for(snapshot_seen, 20, "a worker metrics snapshot")
    health = call(f"{api}/v1/health")
    assert health.status == 200
    body = health.body
    assert body["status"] == "ok"
    assert body["broker"]["reachable"] and body["redis"]["reachable"]
    assert body["lists"]["ready"] and body["lists"]["cached"] >= 50
    assert 0 <= body["newest_event_age_seconds"] < 300
    assert 0 <= body["worker_snapshot_age_seconds"] < 10


def test_the_openapi_document_is_valid_and_describes_every_route(
    api: str, api_settings: Settings
) -> None:
    document = call(f"{api}/openapi.json").body
    validate(document)
    app = create_app(api_settings)
    served = {route.path.replace(":path}", "}") for route in app.app.routes}
    assert set(document["paths"]) == served - {"/page/app.js", "/page/style.css"}
    schemas = document["components"]["schemas"]
    assert {"ClickEvent", "RatingEvent", "UserProfile", "RecommendationMessage"} <= set(schemas)
    post = document["paths"]["/v1/events"]["post"]
    assert {"202", "401", "413", "422"} <= set(post["responses"])


def test_the_stream_pushes_the_new_list_after_a_posted_click(api: str) -> None:
    stream = EventStream(f"{api}/v1/streams/recommendations/u7")
    try:
        first = stream.next("list", 10)
        assert first["user_id"] == "u7"
        item = first["items"][0]["item_id"]
        assert call(f"{api}/v1/events", "POST", _click("u7", item)).status == 202
        pushed = stream.next("list", 20)
        assert pushed["version"] > first["version"]
        assert item not in {entry["item_id"] for entry in pushed["items"]}
    finally:
        stream.close()


def test_the_metrics_stream_carries_the_workers_figures(api: str) -> None:
    stream = EventStream(f"{api}/v1/streams/metrics")
    try:
        points = stream.next("points", 10)
        if len(points) < 2:
            points += stream.next("points", 10)
        last = points[-1]
        assert last["applied_events"] >= 3_000
        assert last["events_per_s"] is not None and last["events_per_s"] >= 0
        assert last["freshness_p99_s"] is not None and last["freshness_p99_s"] > 0
        assert last["workers"] == 1
    finally:
        stream.close()


def test_the_page_is_served_with_a_strict_policy_and_foreign_hosts_are_refused(api: str) -> None:
    page = call(f"{api}/")
    assert page.status == 200 and "<title>stream-rec" in page.body
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert call(f"{api}/page/app.js").status == 200
    rebound = call(f"{api}/v1/users", headers={"Host": "attacker.example:80"})
    assert rebound.status == 421
    assert call(f"{api}/no/such/path").status == 404


def test_serve_runs_from_the_command_line_and_exits_0_on_sigterm(
    kafka_server: Any, redis_server: Any
) -> None:
    name = f"t-serve-{uuid.uuid4().hex[:8]}"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAM_REC_")}
    env |= {
        "STREAM_REC_KAFKA__BOOTSTRAP_SERVERS": kafka_server.bootstrap,
        "STREAM_REC_REDIS__URL": redis_server.url,
        "STREAM_REC_REDIS__KEY_PREFIX": name,
        "STREAM_REC_HTTP__PORT": str(port),
        **{
            f"STREAM_REC_TOPICS__{topic.upper()}": f"{name}.{topic}"
            for topic in ("events", "profiles", "recommendations", "metrics")
        },
        "STREAM_REC_TOPICS__DEAD_LETTER": f"{name}.dead-letter",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "stream_rec", "serve"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for(lambda: _answers(f"http://127.0.0.1:{port}/v1/health"), 60, "the server answering")
        assert call(f"http://127.0.0.1:{port}/v1/health").body["status"] == "ok"
        server.send_signal(signal.SIGTERM)
        out, _ = server.communicate(timeout=30)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(10)
    assert server.returncode == 0, out
    assert f"the live page is at http://127.0.0.1:{port}/" in out


def _answers(url: str) -> bool:
    try:
        return call(url).status == 200
    except OSError:
        return False


def test_a_killed_topic_reader_is_replaced_and_redis_serves_meanwhile(
    api: str, api_settings: Settings
) -> None:
    with ApiServer(api_settings) as server:
        feed = server.runtime.feed
        wait_for(lambda: feed.ready, 30, "the second server's cache")
        first = feed.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        wait_for(lambda: not feed.ready, 10, "the server noticing its reader died")
        answer = call(f"{server.url}/v1/recommendations/u5")
        assert answer.status == 200 and answer.body["user_id"] == "u5"
        metrics = call(f"{server.url}/metrics").body
        assert _sample(metrics, 'stream_rec_http_list_reads_total{source="redis"}') >= 1
        wait_for(lambda: feed.ready and feed.pid not in (None, first), 60, "a new reader")
        assert call(f"{server.url}/v1/health").body["lists"]["ready"]
