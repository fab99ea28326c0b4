"""The server's view of the recommendations and metrics topics, read by a child process.

:mod:`stream_rec.api.feed_process` runs a kafka-python consumer without a group (it
commits nothing and joins nothing), assigned every partition of both topics: the
recommendations topic from its beginning (compacted: the latest list per user), the
metrics topic from :data:`~stream_rec.api.live.HISTORY_SECONDS` ago (the panel's chart).
It writes what it reads to its stdout; :class:`TopicFeed`, on the server's event loop,
reads those frames without blocking, offers each list to the cache and the live hub and
each snapshot to the panel. Every :data:`CHECK_SECONDS` the child reads the end offsets: a
real round trip, which tells the health check that the broker answers, and how far the
cache is behind the topic. A child that exits is started again (the cache is not trusted
meanwhile: lists come from Redis).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import orjson

from stream_rec.api.feed_process import LISTS, METRICS, STATUS, unpack
from stream_rec.api.lists import CachedList, ListCache
from stream_rec.api.live import HISTORY_SECONDS, PanelHistory
from stream_rec.config import KafkaSettings, TopicSettings

log = logging.getLogger(__name__)

CHECK_SECONDS = 2.0
"""How often the end offsets are read (the broker's health and the cache's lag)."""

_READ_BYTES = 1 << 20
_FRAMES_PER_TURN = 64  # then the loop serves requests again (a big topic is read in turns)
_RESTART_SECONDS = 2.0

OnLists = Callable[[list[CachedList]], None]
OnPoint = Callable[[dict[str, Any]], None]


class TopicFeed:
    """Keeps ``cache`` and ``panel`` current from the topics; hands news to the callbacks.

    :meth:`start` (on the event loop) starts the child and reads its frames; ``ready``
    turns true once the child has read the lists up to the end offsets it saw at start;
    :meth:`stop` ends the child (by PID).
    """

    def __init__(
        self,
        kafka: KafkaSettings,
        topics: TopicSettings,
        cache: ListCache,
        panel: PanelHistory,
        on_delivery: Callable[[float], None] | None = None,
        on_ready: Callable[[], None] | None = None,
    ) -> None:
        self._job = orjson.dumps(
            {
                "client_options": kafka.client_options(),
                "lists_topic": topics.recommendations,
                "metrics_topic": topics.metrics,
                "history_seconds": HISTORY_SECONDS,
                "check_seconds": CHECK_SECONDS,
            }
        )
        self.cache = cache
        self.panel = panel
        self._on_delivery = on_delivery or (lambda _seconds: None)
        self._on_ready = on_ready or (lambda: None)
        self._on_lists: OnLists = lambda _entries: None
        self._on_point: OnPoint = lambda _point: None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._child: subprocess.Popen[bytes] | None = None
        self._buffer = bytearray()
        self._stopping = False
        self._checked: asyncio.Event | None = None
        self.ready = False
        self.broker_checked_at: float | None = None
        """Unix time of the last successful round trip to the broker."""
        self.lag: int | None = None
        """Lists published but not yet read by this server, at the last check."""

    @property
    def pid(self) -> int | None:
        """The reader child's process id (None while there is none)."""
        return None if self._child is None else self._child.pid

    def listen(self, on_lists: OnLists, on_point: OnPoint) -> None:
        """Call these (on the event loop) with every new list / panel point."""
        self._on_lists, self._on_point = on_lists, on_point

    async def start(self, timeout: float = 60.0) -> None:
        """Start the child and wait (up to ``timeout``) until it has reached the broker."""
        self._loop = asyncio.get_running_loop()
        self._checked = asyncio.Event()
        self._spawn()
        try:
            await asyncio.wait_for(self._checked.wait(), timeout)
        except TimeoutError:
            log.warning("the topic reader has not reached the broker after %.0f s", timeout)

    def stop(self) -> None:
        self._stopping = True
        child, self._child = self._child, None
        if child is None:
            return
        self._unwatch(child)
        if child.poll() is None:
            child.terminate()
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait(5)
        if child.stdout is not None:
            child.stdout.close()

    def _spawn(self) -> None:
        child = subprocess.Popen(
            [sys.executable, "-m", "stream_rec.api.feed_process"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert child.stdin is not None
        assert child.stdout is not None
        assert self._loop is not None
        child.stdin.write(self._job)  # secrets travel by pipe, never argv or environment
        child.stdin.close()
        os.set_blocking(child.stdout.fileno(), False)
        self._child = child
        self._buffer.clear()
        self._loop.add_reader(child.stdout.fileno(), self._readable)
        log.info("topic reader started (pid %d)", child.pid)

    def _unwatch(self, child: subprocess.Popen[bytes]) -> None:
        if self._loop is not None and child.stdout is not None and not child.stdout.closed:
            with contextlib.suppress(ValueError, OSError):
                self._loop.remove_reader(child.stdout.fileno())

    def _readable(self) -> None:
        child = self._child
        if child is None or child.stdout is None:
            return
        try:
            chunk = os.read(child.stdout.fileno(), _READ_BYTES)
        except BlockingIOError:
            return
        if not chunk:
            self._child_exited(child)
            return
        self._buffer += chunk
        self._take_frames()

    def _take_frames(self) -> None:
        buffer, at, frames = self._buffer, 0, 0
        while len(buffer) - at >= 5 and frames < _FRAMES_PER_TURN:
            (size,) = struct.unpack_from(">I", buffer, at + 1)
            if len(buffer) - at - 5 < size:
                break
            kind, payload = bytes(buffer[at : at + 1]), bytes(buffer[at + 5 : at + 5 + size])
            at += 5 + size
            frames += 1
            self._take(kind, payload)
        del buffer[:at]
        if len(buffer) >= 5 and self._loop is not None and frames == _FRAMES_PER_TURN:
            self._loop.call_soon(self._take_frames)  # more complete frames: next turn

    def _take(self, kind: bytes, payload: bytes) -> None:
        if kind == LISTS:
            now = time.time()
            fresh = []
            for value in unpack(payload):
                entry = CachedList.parse(value)
                if entry is not None and self.cache.offer(entry):
                    fresh.append(entry)
                    if self.ready:
                        self._on_delivery(max(0.0, now - entry.generated_at))
            if fresh:
                self._on_lists(fresh)
        elif kind == METRICS:
            for value in unpack(payload):
                with contextlib.suppress(orjson.JSONDecodeError):
                    snapshot = orjson.loads(value)
                    point = self.panel.offer(snapshot) if isinstance(snapshot, dict) else None
                    if point is not None:
                        self._on_point(point)
        elif kind == STATUS:
            status = orjson.loads(payload)
            self.broker_checked_at, self.lag = status["checked_at"], status["lag"]
            if self._checked is not None:
                self._checked.set()
            if status["ready"] and not self.ready:
                self.ready = True
                log.info("lists cache ready: %d lists read from the topic", len(self.cache))
                self._on_ready()

    def _child_exited(self, child: subprocess.Popen[bytes]) -> None:
        self._unwatch(child)
        code = child.wait()
        if child.stdout is not None:
            child.stdout.close()
        self._child = None
        self.ready = False  # until a new reader has caught up, lists come from Redis
        if self._stopping or self._loop is None:
            return
        log.warning(
            "the topic reader exited (code %s); starting another in %.0f s",
            code,
            _RESTART_SECONDS,
        )
        self._loop.call_later(_RESTART_SECONDS, self._restart)

    def _restart(self) -> None:
        if not self._stopping:
            self._spawn()
