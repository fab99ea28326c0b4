"""The ``http`` section of `stream-rec bench`: the API's speed with the worker running.

It starts its own local Redis and Kafka (:mod:`stream_rec.services`), a trainer worker and
`stream-rec serve` as child processes (as deployed), writes profiles and a seed of events
for the users whose lists are read, and keeps a live stream of ``STREAM_RATE`` events/s
flowing to the worker throughout. Then, from a separate load-generator process
(:mod:`stream_rec.api.loadgen`): GET latency p50/p99 and requests/s at a fixed offered
load of :data:`OFFERED_PER_S` over 16 connections, and the saturation requests/s (also
through Starlette's routing, for what the fast path saves); and,
from this process, the time from a POSTed click to the changed list reaching a page's
server-sent-event stream. Everything it started is stopped by PID.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import orjson

from stream_rec.api.loadgen import click_to_page, percentile
from stream_rec.config import load_settings
from stream_rec.evaluation.synthetic import SyntheticWorld
from stream_rec.services import LocalKafka, LocalRedis, free_port
from stream_rec.services.process import ChildProcess
from stream_rec.stream.kafka_io import ensure_topics, make_admin, make_producer
from stream_rec.stream.snapshot import histogram_quantile

OFFERED_PER_S = 2_000
CONNECTIONS = 16
STREAM_RATE = 300.0
USERS, ITEMS = 2_000, 1_000
WARMUP_SECONDS = 2.0

Log = Callable[[str], None]


def bench_http(quick: bool, log: Log | None = None) -> dict[str, Any]:
    say = log or (lambda _line: None)
    get_seconds, clicks = (5.0, 10) if quick else (30.0, 100)
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="stream-rec-")))
        env, flavor, url, metrics_url = _services(stack, workdir)
        settings = load_settings()  # from the environment just set
        _child(stack, [sys.executable, "-m", "stream_rec", "run"], env, workdir / "worker.log")
        _wait_http(metrics_url, 180, "the worker")
        _child(stack, [sys.executable, "-m", "stream_rec", "serve"], env, workdir / "api.log")
        _wait_http(f"{url}/v1/health", 60, "the API server")
        world = SyntheticWorld.create(USERS, ITEMS, seed=11)
        producer = make_producer(settings.kafka, settings.topics)
        stack.callback(producer.close)
        for profile in world.profiles():
            key = str(profile.get("user_id") or profile.get("item_id")).encode()
            producer.send(settings.topics.profiles, key=key, value=orjson.dumps(profile))
        producer.flush()
        say("http: waiting for every user's first list ...")
        _wait_lists(url, USERS, 120)
        stream = _LiveStream(producer, settings.topics.events, world, STREAM_RATE)
        stream.start()
        stack.callback(stream.stop.set)
        # Warm-up, discarded: connections, the server's first requests, the stream's start.
        _loadgen(url, ["--rate", str(OFFERED_PER_S), "--seconds", str(WARMUP_SECONDS)])
        load = os.getloadavg()[0]
        say(f"http: GET at {OFFERED_PER_S}/s for {get_seconds:.0f} s ...")
        before = _buckets(_scrape(f"{url}/metrics"))
        fixed = _loadgen(url, ["--rate", str(OFFERED_PER_S), "--seconds", str(get_seconds)])
        # The server's own view of the same requests: arrival to the end of the answer.
        inside = _delta(before, _buckets(_scrape(f"{url}/metrics")))
        fixed["server_p50_ms"] = _ms(histogram_quantile(0.5, inside))
        fixed["server_p99_ms"] = _ms(histogram_quantile(0.99, inside))
        closed = ["--closed", "--seconds", "2" if quick else "5"]
        saturation = _loadgen(url, closed)
        # ?k=10 takes the same list through Starlette's routing (the fast path takes only
        # plain GETs), plus a re-encode of the list: what the fast path saves.
        through_starlette = _loadgen(url, [*closed, "--query", "k=10"])
        say(f"http: {clicks} clicks to the page ...")
        latencies = asyncio.run(click_to_page(url, [world.user_id(u) for u in range(50)], clicks))
        served = _scrape(f"{url}/metrics")
        load_after = os.getloadavg()[0]
        stream.stop.set()
        stream.join(10)
        return {
            "get": fixed,
            "saturation": saturation,
            "saturation_through_starlette": through_starlette,
            "click_to_page": {
                "clicks": len(latencies),
                "p50_ms": round(1000 * percentile(latencies, 0.5), 1),
                "p99_ms": round(1000 * percentile(latencies, 0.99), 1),
                "max_ms": round(1000 * max(latencies), 1),
            },
            "lists_from_cache_share": _cache_share(served),
            "setup": {
                "broker": flavor,
                "users": USERS,
                "items": ITEMS,
                "worker_stream_events_per_s": STREAM_RATE,
                "worker_batch_max_seconds": settings.worker.batch_max_seconds,
                "warmup_seconds": WARMUP_SECONDS,
                "load_average_1m_before": round(load, 2),
                "load_average_1m_after": round(load_after, 2),
                "load_generator": "separate process, open loop, latency from each request's "
                "due time, keep-alive HTTP/1.1",
            },
        }


def _services(stack: ExitStack, workdir: Path) -> tuple[dict[str, str], str, str, str]:
    redis = stack.enter_context(LocalRedis(workdir=workdir / "redis"))
    kafka = LocalKafka("auto", workdir=workdir / "kafka")
    stack.callback(kafka.stop)
    kafka.start()
    http_port, metrics_port = free_port(), free_port()
    overrides = {
        "STREAM_REC_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap,
        "STREAM_REC_REDIS__URL": redis.url,
        "STREAM_REC_METRICS__PORT": str(metrics_port),
        "STREAM_REC_METRICS__SNAPSHOT_SECONDS": "1",
        "STREAM_REC_HTTP__HOST": "127.0.0.1",
        "STREAM_REC_HTTP__PORT": str(http_port),
    }
    if kafka.flavor == "tansu":
        overrides |= {
            "STREAM_REC_KAFKA__SESSION_TIMEOUT_MS": "6000",
            "STREAM_REC_KAFKA__HEARTBEAT_INTERVAL_MS": "1000",
        }
    keep = {"STREAM_REC_CACHE_DIR", "STREAM_REC_KAFKA_LIBS"}
    for name in [n for n in os.environ if n.startswith("STREAM_REC_") and n not in keep]:
        del os.environ[name]  # the bench measures the defaults, whatever this shell sets
    os.environ.update(overrides)
    settings = load_settings()
    admin = make_admin(settings.kafka)
    try:
        ensure_topics(admin, settings.topics)
    finally:
        admin.close()
    url = f"http://127.0.0.1:{http_port}"
    return (
        dict(os.environ),
        kafka.flavor or "unknown",
        url,
        f"{url.rsplit(':', 1)[0]}:{metrics_port}/metrics",
    )


def _child(stack: ExitStack, argv: list[str], env: dict[str, str], log_path: Path) -> None:
    """Start ``argv`` logging to ``log_path``; at the stack's end SIGTERM, then SIGKILL."""
    child = ChildProcess(log_path.stem, log_path.parent)
    child.spawn(argv, env)
    stack.callback(child.stop, 30.0)


def _wait_http(url: str, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):  # noqa: S310 - our own http URL
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{what} did not come up within {timeout} s")


def _wait_lists(url: str, users: int, timeout: float) -> None:
    """Until the server holds a list for each user (a profile gives one at once)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        # S310 below: our own http URL, never a file: or user-given one.
        with urllib.request.urlopen(f"{url}/v1/health", timeout=5) as response:  # noqa: S310 - ours
            health = json.loads(response.read())
        if health["lists"]["ready"] and health["lists"]["cached"] >= users:
            return
        time.sleep(0.5)
    raise RuntimeError(f"the lists of {users} users did not arrive within {timeout} s")


def _loadgen(url: str, args: list[str]) -> dict[str, Any]:
    argv = [sys.executable, "-m", "stream_rec.api.loadgen", url, "--users", str(USERS)]
    argv += ["--connections", str(CONNECTIONS), *args]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=True)
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def _scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - our own http URL
        return str(response.read().decode())


_BUCKET = re.compile(
    r"^stream_rec_http_request_duration_seconds_bucket"
    r'\{le="([^"]+)",route="recommendations"\} (\S+)$',
    re.M,
)


def _buckets(metrics: str) -> dict[float, float]:
    """The GET route's cumulative latency buckets (upper bound in seconds -> count)."""
    return {float(le): float(count) for le, count in _BUCKET.findall(metrics)}


def _delta(before: dict[float, float], after: dict[float, float]) -> list[tuple[float, float]]:
    return [(le, after[le] - before.get(le, 0.0)) for le in sorted(after)]


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(1000 * seconds, 3)


def _cache_share(metrics: str) -> float | None:
    reads = dict(
        re.findall(r'^stream_rec_http_list_reads_total\{source="(\w+)"\} (\S+)$', metrics, re.M)
    )
    total = sum(float(v) for v in reads.values())
    return None if not total else round(float(reads.get("cache", 0.0)) / total, 4)


class _LiveStream(threading.Thread):
    """The worker's background load: world events at ``rate``/s, stamped with now."""

    def __init__(self, producer: Any, topic: str, world: SyntheticWorld, rate: float) -> None:
        super().__init__(name="bench-events", daemon=True)
        self._producer, self._topic, self._world, self._rate = producer, topic, world, rate
        self.stop = threading.Event()

    def run(self) -> None:
        started = time.monotonic()
        for sent, event in enumerate(self._world.events(10**9)):
            delay = started + sent / self._rate - time.monotonic()
            if self.stop.is_set() or (delay > 0 and self.stop.wait(delay)):
                break
            event["ts"] = time.time()
            self._producer.send(
                self._topic, key=event["user_id"].encode(), value=orjson.dumps(event)
            )
        self._producer.flush()
