"""Worker processes for the crash tests: started as deployed, killed, restarted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from stream_rec.config import Settings
from stream_rec.model import HybridModel, InteractionBatch
from stream_rec.store import RedisStore

ROOT = Path(__file__).resolve().parents[2]
TABLES = ("users", "items", "user_features", "item_features")


def worker_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment of a deployed worker running ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAM_REC_")}
    env |= {
        k: os.environ[k] for k in ("STREAM_REC_CACHE_DIR", "STREAM_REC_DATA_DIR") if k in os.environ
    }
    env |= {
        "STREAM_REC_KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
        "STREAM_REC_KAFKA__SESSION_TIMEOUT_MS": "6000",
        "STREAM_REC_KAFKA__HEARTBEAT_INTERVAL_MS": "1000",
        "STREAM_REC_REDIS__URL": settings.redis.url,
        "STREAM_REC_REDIS__KEY_PREFIX": settings.redis.key_prefix,
        "STREAM_REC_REDIS__SOCKET_TIMEOUT_SECONDS": "2",
        "STREAM_REC_TOPICS__EVENTS": settings.topics.events,
        "STREAM_REC_TOPICS__PROFILES": settings.topics.profiles,
        "STREAM_REC_TOPICS__RECOMMENDATIONS": settings.topics.recommendations,
        "STREAM_REC_TOPICS__METRICS": settings.topics.metrics,
        "STREAM_REC_TOPICS__DEAD_LETTER": settings.topics.dead_letter,
        "STREAM_REC_TOPICS__PARTITIONS": str(settings.topics.partitions),
        "STREAM_REC_WORKER__GROUP_ID": settings.worker.group_id,
        "STREAM_REC_WORKER__RETRY_MAX_SECONDS": "1",
        "STREAM_REC_METRICS__PORT": "0",
        "STREAM_REC_LOG_LEVEL": "WARNING",
    }
    return env | extra


class WorkerProcess:
    """``python consumers/trainer.py`` with its output kept in a log file. Every one still
    running when its test ends is killed (tests/chaos/conftest.py), pass or fail."""

    started: ClassVar[list[WorkerProcess]] = []

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self._log = log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "consumers/trainer.py"],
            env=env,
            cwd=ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        WorkerProcess.started.append(self)

    @classmethod
    def kill_all(cls) -> None:
        while cls.started:
            worker = cls.started.pop()
            if worker.proc.poll() is None:
                worker.proc.kill()
                worker.proc.wait(30)
            worker._log.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(30)
        self._log.close()

    def terminate(self, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        self._log.close()
        return code


def applied(store: RedisStore) -> int:
    return store.stats().applied_events


def wait_until(condition: Callable[[], bool], timeout: float, what: str, poll: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def stored_model(store: RedisStore, params: Any) -> HybridModel:
    """The model as Redis holds it."""
    model = HybridModel(params)
    snapshot = store.load(model.layout)
    model.restore(snapshot.model, snapshot.seen, snapshot.registry)
    return model


def reference_model(params: Any, events: list[dict[str, Any]]) -> HybridModel:
    """The model of an uninterrupted run: every event once, in order."""
    kinds = {"impression": 0, "click": 1, "watch": 2, "rating": 3}
    model = HybridModel(params)
    for start in range(0, len(events), 5_000):
        chunk = events[start : start + 5_000]
        model.apply(
            InteractionBatch.from_columns(
                [e["user_id"] for e in chunk],
                [e["item_id"] for e in chunk],
                [kinds[e["type"]] for e in chunk],
                [e.get("rating", e.get("watch_seconds", 0.0)) for e in chunk],
                [e.get("duration_seconds", np.nan) for e in chunk],
            )
        )
    return model


def same_state(a: HybridModel, b: HybridModel) -> bool:
    """Bit for bit: every table's rows and ids, and the session state."""
    for name in TABLES:
        ta, tb = getattr(a, name), getattr(b, name)
        if list(ta.ids) != list(tb.ids) or ta.view().tobytes() != tb.view().tobytes():
            return False
        if ta.counts[: len(ta)].tobytes() != tb.counts[: len(tb)].tobytes():
            return False
    return (
        a.items.side["neighbours"][: len(a.items)].tobytes()
        == b.items.side["neighbours"][: len(b.items)].tobytes()
        and a.users.side["recent"][: len(a.users)].tobytes()
        == b.users.side["recent"][: len(b.users)].tobytes()
        and a.rating_stats == b.rating_stats
    )
