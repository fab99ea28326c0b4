"""`stream-rec demo`: a whole local stack, a synthetic stream, and live lists on screen.

It starts Redis and a Kafka broker (stream_rec.services), creates the topics, starts a
trainer worker as a child process (``python -m stream_rec run``, the same entry point as
production), writes profiles and then a live event stream from a synthetic world with
planted tastes, and prints a few users' current top-10 lists as the model learns. It
stops everything it started when ``--seconds`` run out or on Ctrl-C.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import orjson
from kafka import KafkaProducer

from stream_rec.config import Settings, load_settings
from stream_rec.evaluation.synthetic import SyntheticWorld
from stream_rec.services import LocalKafka, LocalRedis, free_port
from stream_rec.store import RedisStore
from stream_rec.stream.kafka_io import ensure_topics, make_admin, make_producer

Print = Callable[[str], None]


@dataclass(frozen=True)
class DemoOptions:
    seconds: float | None = None
    """Stream for this long, then stop; None streams until Ctrl-C."""
    rate: float = 300.0
    """Events per second written to the events topic."""
    users: int = 300
    items: int = 400
    show: int = 3
    """Users whose lists are printed."""
    broker: Literal["auto", "apache", "tansu"] = "auto"
    report_every: float = 3.0
    seed: int = 7
    http_port: int | None = None
    """Also serve the API and the live page on 127.0.0.1 at this port (0: a free one)."""


class _EventWriter(threading.Thread):
    """Writes the synthetic stream at a steady rate, stamping each event with now."""

    def __init__(
        self, producer: KafkaProducer, topic: str, world: SyntheticWorld, rate: float
    ) -> None:
        super().__init__(name="demo-events", daemon=True)
        self._producer = producer
        self._topic = topic
        self._world = world
        self._rate = rate
        self.stop = threading.Event()
        self.sent = 0

    def run(self) -> None:
        started = time.monotonic()
        for event in self._world.events(10**9):
            if self.stop.is_set():
                break
            due = started + self.sent / self._rate
            delay = due - time.monotonic()
            if delay > 0 and self.stop.wait(delay):
                break
            event["ts"] = round(time.time(), 3)
            self._producer.send(
                self._topic, key=event["user_id"].encode(), value=orjson.dumps(event)
            )
            self.sent += 1
        self._producer.flush()


def run_demo(options: DemoOptions, out: Print = print) -> int:
    """Run the demo; returns the process exit code (0 when everything stopped cleanly).

    The demo's own settings (broker, Redis, metrics port) are put into this process's
    environment, which the worker inherits; other STREAM_REC_* settings pass through.
    """
    stop = threading.Event()
    previous = {
        sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        with ExitStack() as stack:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="stream-rec-")))
            if options.http_port is not None:  # the page's panel: a snapshot a second
                os.environ["STREAM_REC_METRICS__SNAPSHOT_SECONDS"] = "1"
            settings, metrics_port = _start_services(out, stack, workdir, options.broker)
            worker_log = workdir / "worker.log"
            worker = _start_worker(worker_log, stack)
            out(
                f"  trainer worker pid {worker.pid}; metrics at http://127.0.0.1:{metrics_port}/metrics"
            )
            if not _wait_ready(worker, metrics_port, stop, out):
                _print_tail(worker_log, out)
                return 1
            if options.http_port is not None and not _start_api(
                options.http_port, workdir / "api.log", stack, out
            ):
                return 1
            world = SyntheticWorld.create(options.users, options.items, seed=options.seed)
            store = RedisStore.from_settings(settings.redis)
            store.start()
            stack.callback(store.close)
            writer = _start_stream(settings, world, options.rate, stack, out)
            if not _watch(options, stop, worker, worker_log, writer, world, store, out):
                return 1
            writer.stop.set()
            writer.join(10)
            _wait_applied(store, writer.sent, timeout=15.0)
            _report(writer.sent, world, store, options.show, out)
            return _stop_worker(worker, worker_log, out)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _start_services(
    out: Print, stack: ExitStack, workdir: Path, broker: Literal["auto", "apache", "tansu"]
) -> tuple[Settings, int]:
    out("stream-rec demo: starting Redis and a Kafka broker on 127.0.0.1 ...")
    redis = stack.enter_context(LocalRedis(workdir=workdir / "redis"))
    kafka = LocalKafka(broker, workdir=workdir / "kafka")
    stack.callback(kafka.stop)
    kafka.start()
    out(f"  Redis {redis.url} (pid {redis.pid})")
    out(f"  {kafka.flavor} Kafka {kafka.bootstrap} (pid {kafka.pid})")
    metrics_port = free_port()
    overrides = {
        "STREAM_REC_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap,
        "STREAM_REC_REDIS__URL": redis.url,
        "STREAM_REC_METRICS__PORT": str(metrics_port),
        "STREAM_REC_WORKER__BATCH_MAX_SECONDS": "0.05",
    }
    if kafka.flavor == "tansu":  # Tansu holds a JoinGroup for half the session timeout
        overrides |= {
            "STREAM_REC_KAFKA__SESSION_TIMEOUT_MS": "6000",
            "STREAM_REC_KAFKA__HEARTBEAT_INTERVAL_MS": "1000",
        }
    os.environ.update(overrides)
    settings = load_settings()
    admin = make_admin(settings.kafka)
    try:
        ensure_topics(admin, settings.topics)
    finally:
        admin.close()
    return settings, metrics_port


def _start_stream(
    settings: Settings, world: SyntheticWorld, rate: float, stack: ExitStack, out: Print
) -> _EventWriter:
    """Profiles first (demographics, genres), then the live event stream."""
    producer = make_producer(settings.kafka, settings.topics)
    stack.callback(producer.close)
    for profile in world.profiles():
        key = str(profile.get("user_id") or profile.get("item_id")).encode()
        producer.send(settings.topics.profiles, key=key, value=orjson.dumps(profile))
    writer = _EventWriter(producer, settings.topics.events, world, rate)
    out(
        f"streaming {rate:.0f} events/s from {world.n_users} users over {world.n_items} items "
        "(each user likes two genres; * marks an item of a liked genre) ..."
    )
    writer.start()
    stack.callback(writer.stop.set)
    return writer


def _watch(
    options: DemoOptions,
    stop: threading.Event,
    worker: subprocess.Popen[bytes],
    worker_log: Path,
    writer: _EventWriter,
    world: SyntheticWorld,
    store: RedisStore,
    out: Print,
) -> bool:
    """Report every few seconds until the time is up; False if the worker died."""
    end = None if options.seconds is None else time.monotonic() + options.seconds
    while not stop.is_set():
        left = options.report_every if end is None else end - time.monotonic()
        if left <= 0 or stop.wait(min(options.report_every, left)):
            break
        if worker.poll() is not None:
            out(f"the worker exited with code {worker.returncode}; its log: {worker_log}")
            _print_tail(worker_log, out)
            return False
        _report(writer.sent, world, store, options.show, out)
    return True


def _stop_worker(worker: subprocess.Popen[bytes], worker_log: Path, out: Print) -> int:
    out("stopping the worker (SIGTERM: it finishes its batch, commits and exits) ...")
    worker.send_signal(signal.SIGTERM)
    try:
        code = worker.wait(30)
    except subprocess.TimeoutExpired:
        worker.kill()
        code = -9
    out(f"worker exited with code {code}; stopping Kafka and Redis.")
    if code != 0:
        _print_tail(worker_log, out)
    return 0 if code == 0 else 1


def _start_worker(log_path: Path, stack: ExitStack) -> subprocess.Popen[bytes]:
    with log_path.open("ab") as log_file:
        worker = subprocess.Popen(
            [sys.executable, "-m", "stream_rec", "run"],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=dict(os.environ),
        )

    def stop_worker() -> None:
        if worker.poll() is None:
            worker.kill()
            worker.wait(10)

    stack.callback(stop_worker)
    return worker


def _start_api(port: int, log_path: Path, stack: ExitStack, out: Print) -> bool:
    """`stream-rec serve` as a child on 127.0.0.1:PORT, without a token; False if it
    did not come up (its log is printed)."""
    port = port or free_port()
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        pass  # nothing listens there: the server may take it
    else:
        out(f"port {port} is in use on 127.0.0.1: choose another --http-port (or 0)")
        return False
    env = {k: v for k, v in os.environ.items() if k != "STREAM_REC_HTTP__TOKEN"}
    env |= {"STREAM_REC_HTTP__HOST": "127.0.0.1", "STREAM_REC_HTTP__PORT": str(port)}
    with log_path.open("ab") as log_file:
        server = subprocess.Popen(
            [sys.executable, "-m", "stream_rec", "serve"],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
        )

    def stop_server() -> None:
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(15)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(5)

    stack.callback(stop_server)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and server.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/health", timeout=2):
                if server.poll() is not None:
                    break
                out(f"  live page at http://127.0.0.1:{port}/ (API server pid {server.pid})")
                return True
        except OSError:
            time.sleep(0.2)
    out(f"the API server did not come up; its log: {log_path}")
    _print_tail(log_path, out)
    return False


def _wait_ready(
    worker: subprocess.Popen[bytes], metrics_port: int, stop: threading.Event, out: Print
) -> bool:
    """Wait until the worker serves its metrics (it has compiled its kernels, loaded its
    state and joined the group); False if it died or the demo was interrupted."""
    started = time.monotonic()
    told = False
    while not stop.is_set():
        if worker.poll() is not None:
            out(f"the worker exited with code {worker.returncode} while starting")
            return False
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=1):
                return True
        except OSError:
            pass
        if not told and time.monotonic() - started > 3:
            out("  waiting for the worker (a first run compiles its kernels, about 30 s) ...")
            told = True
        stop.wait(0.2)
    return False


def _wait_applied(store: RedisStore, produced: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and store.stats().applied_events < produced:
        time.sleep(0.2)


def _report(produced: int, world: SyntheticWorld, store: RedisStore, show: int, out: Print) -> None:
    stats = store.stats()
    lists: dict[int, list[str]] = {}
    for user in range(world.n_users):
        raw = store.recommendation(world.user_id(user))
        if raw is not None:
            lists[user] = [entry["item_id"] for entry in orjson.loads(raw)["items"]]
    match = [
        len(set(items) & world.liked_item_ids(u)) / len(items)
        for u, items in lists.items()
        if items
    ]
    chance = [len(world.liked_item_ids(u)) / world.n_items for u in lists]
    summary = f"produced {produced}, applied {stats.applied_events}, {len(lists)} users with lists"
    if match:
        summary += (
            f"; {100 * sum(match) / len(match):.0f}% of listed items in the user's liked genres"
            f" (chance {100 * sum(chance) / len(chance):.0f}%)"
        )
    out(f"[{time.strftime('%H:%M:%S')}] {summary}")
    for user in sorted(lists)[:show]:
        liked = world.liked_item_ids(user)
        shown = " ".join(
            f"{item}{'*' if item in liked else ''}({'/'.join(world.genres_of(item))})"
            for item in lists[user]
        )
        out(f"  {world.user_id(user)} likes {'+'.join(world.liked_genres(user))}: top-10 {shown}")


def _print_tail(path: Path, out: Print, lines: int = 20) -> None:
    if path.exists():
        for line in path.read_text(errors="replace").splitlines()[-lines:]:
            out(f"    {line}")
