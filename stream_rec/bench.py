"""`stream-rec bench`: speed measured side by side in one run, written as JSON.

Sections:
- ``kernel``: events/s of the compiled per-event update against river's
  ``reco.BiasedMF.learn_one`` on the same rating events (explicit objective, k = 32 and
  64), and of the full default model on a synthetic click/watch stream (implicit).
  ``events_per_s`` times the kernel on rows already mapped from ids;
  ``apply_events_per_s`` times :meth:`HybridModel.apply` with the id mapping.
- ``topk``: users/s of the top-k for 1000 users over 10k and 100k items (k = 64, 20 seen
  items excluded per user) against the bare float32 matmul of the same shapes.
- ``processor``: the worker's own cost, without Kafka or Redis: events/s of
  :meth:`BatchProcessor.process` on the end-to-end workload's first events, in batches of
  the worker's default size, against the in-memory store and a sink that drops the
  lists, and the seconds of each stage; and (``small_batches``) the cost of an event by
  stage in batches of 500 with a commit every 20, as at 10k events/s offered.
- ``e2e``, ``redis`` and ``quality``: the whole pipeline on real Kafka and Redis, see
  :mod:`stream_rec.bench_e2e`.
- ``http``: the API with a worker running (:mod:`stream_rec.api.bench`): GET p50/p99 and
  requests/s at 2,000 offered requests/s from a separate process, saturation requests/s,
  and the time from a POSTed click to the changed list reaching the page's stream.
Each kernel and top-k figure is the best of a few repeats (the machines are shared and
noisy).
"""

from __future__ import annotations

import datetime as dt
import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
from prometheus_client import CollectorRegistry
from river import optim, reco

from stream_rec.api.bench import bench_http
from stream_rec.bench_e2e import Workload, prefill_messages, run_e2e
from stream_rec.config import WorkerSettings
from stream_rec.evaluation.locate import dataset_path
from stream_rec.evaluation.movielens import load_ratings
from stream_rec.evaluation.synthetic import SyntheticWorld
from stream_rec.metrics import WorkerMetrics
from stream_rec.model import EventKind, HybridModel, InteractionBatch, ModelParams, top_k
from stream_rec.store import Checkpoint, CommitOutcome, MemoryStore
from stream_rec.stream.processor import BatchProcessor, OutputTopics
from stream_rec.stream.records import Record


def _best(repeats: int, run: Callable[[], float]) -> float:
    """The shortest of ``repeats`` timings (seconds) of ``run``."""
    return min(run() for _ in range(repeats))


def rating_events(limit: int) -> tuple[InteractionBatch, str]:
    """The first ``limit`` ratings of ml-latest-small, or synthetic ratings where it is absent."""
    path = dataset_path("ml-latest-small")
    if path is not None:
        ratings = load_ratings(path, "movielens-csv")
        n = min(limit, len(ratings))
        batch = InteractionBatch(
            ratings.users[:n].tolist(),
            ratings.items[:n].tolist(),
            np.full(n, EventKind.RATING, np.int8),
            ratings.ratings[:n].astype(np.float32),
            np.full(n, np.nan, np.float32),
            ratings.timestamps[:n],
        )
        return batch, f"ml-latest-small, first {n} ratings"
    world = SyntheticWorld.create(n_users=600, n_items=9_000, seed=1)
    rng = np.random.default_rng(1)
    events = [e for e in world.events(limit * 2) if e["type"] != "impression"][:limit]
    batch = InteractionBatch.from_columns(
        [e["user_id"] for e in events],
        [e["item_id"] for e in events],
        [EventKind.RATING] * len(events),
        (rng.integers(1, 11, len(events)) / 2).tolist(),
    )
    return batch, f"synthetic ratings, {len(events)}"


def explicit_params(k: int) -> ModelParams:
    """The explicit objective alone: the same work per event as river's BiasedMF."""
    return ModelParams(
        factors=k,
        learning_rate=0.05,
        bias_learning_rate=0.025,
        rating_scale_learning_rate=0.0,
        rating_weight=0.0,
        session_length=0,
        session_min_rating=1e9,
        max_features=0,
    )


def kernel_events_per_s(model: HybridModel, batch: InteractionBatch, repeats: int) -> float:
    """Events/s of the compiled update alone (ids mapped to rows beforehand)."""
    users = model.users.rows_for(batch.user_ids)
    items = model.items.rows_for(batch.item_ids)
    model.apply(batch.slice(0, 1))  # grows the side arrays; compiles if needed

    def run() -> float:
        started = time.perf_counter()
        model.step_rows(users, items, batch, len(model.items))
        return time.perf_counter() - started

    return len(batch) / _best(repeats, run)


def apply_events_per_s(params: ModelParams, batch: InteractionBatch, repeats: int) -> float:
    """Events/s of HybridModel.apply on a fresh model (id mapping and bookkeeping included)."""
    HybridModel(params).warmup()

    def run() -> float:
        model = HybridModel(params)
        started = time.perf_counter()
        for start in range(0, len(batch), 2_000):
            model.apply(batch.slice(start, start + 2_000))
        return time.perf_counter() - started

    return len(batch) / _best(repeats, run)


def river_events_per_s(batch: InteractionBatch, k: int, limit: int) -> float:
    """Events/s of river's BiasedMF.learn_one (n_factors=k, plain SGD) on the same events."""
    model: Any = reco.BiasedMF(
        n_factors=k, bias_optimizer=optim.SGD(0.025), latent_optimizer=optim.SGD(0.05)
    )
    n = min(limit, len(batch))
    users, items, values = batch.user_ids[:n], batch.item_ids[:n], batch.values[:n].tolist()
    started = time.perf_counter()
    for user, item, y in zip(users, items, values, strict=True):
        model.learn_one(user, item, y)
    return n / (time.perf_counter() - started)


def implicit_events(n: int) -> InteractionBatch:
    """A synthetic stream with the demo's event mix (clicks, watches, ratings, impressions)."""
    world = SyntheticWorld.create(n_users=20_000, n_items=10_000, seed=3)
    codes = {"impression": 0, "click": 1, "watch": 2, "rating": 3}
    events = list(world.events(n))
    return InteractionBatch.from_columns(
        [e["user_id"] for e in events],
        [e["item_id"] for e in events],
        [codes[e["type"]] for e in events],
        [e.get("rating", e.get("watch_seconds", 0.0)) for e in events],
        [e.get("duration_seconds", float("nan")) for e in events],
    )


def bench_kernel(quick: bool, _log: Callable[[str], None]) -> dict[str, Any]:
    repeats = 2 if quick else 3
    ratings, source = rating_events(30_000 if quick else 100_836)
    river_limit = len(ratings)  # river learns the very same events
    out: dict[str, Any] = {"ratings": source}
    for k in (32, 64):
        params = explicit_params(k)
        ours = kernel_events_per_s(HybridModel(params), ratings, repeats)
        river = river_events_per_s(ratings, k, river_limit)
        out[f"explicit_k{k}"] = {
            "events_per_s": round(ours),
            "apply_events_per_s": round(apply_events_per_s(params, ratings, repeats)),
            "river_events_per_s": round(river),
            "ratio_to_river": round(ours / river, 1),
        }
    stream = implicit_events(50_000 if quick else 200_000)
    params = ModelParams(factors=64)
    model = HybridModel(params)
    out["implicit_k64"] = {
        "events_per_s": round(kernel_events_per_s(model, stream, repeats)),
        "apply_events_per_s": round(apply_events_per_s(params, stream, repeats)),
        "workload": f"synthetic demo mix, {len(stream)} events, 20k users, 10k items, "
        f"{params.negatives} negatives per positive, session on",
    }
    return out


def bench_topk(quick: bool, _log: Callable[[str], None]) -> dict[str, Any]:
    repeats = 3 if quick else 5
    rng = np.random.default_rng(0)
    users = rng.normal(size=(1_000, 64)).astype(np.float32)
    out: dict[str, Any] = {}
    for n in (10_000, 100_000):
        items = rng.normal(size=(n, 64)).astype(np.float32)
        bias = rng.normal(size=n).astype(np.float32)
        seen = rng.integers(0, n, size=(1_000, 20))
        indptr = np.arange(0, 20 * 1_000 + 1, 20, dtype=np.int64)
        indices = seen.reshape(-1).astype(np.int64)
        top_k(users[:10], items, bias, indptr, indices, 10)  # compile

        def selected(
            items: npt.NDArray[np.float32] = items,
            bias: npt.NDArray[np.float32] = bias,
            indptr: npt.NDArray[np.int64] = indptr,
            indices: npt.NDArray[np.int64] = indices,
        ) -> float:
            started = time.perf_counter()
            top_k(users, items, bias, indptr, indices, 10)
            return time.perf_counter() - started

        def matmul(items: npt.NDArray[np.float32] = items) -> float:
            started = time.perf_counter()
            _ = users @ items.T
            return time.perf_counter() - started

        ours = 1_000 / _best(repeats, selected)
        bare = 1_000 / _best(repeats, matmul)
        out[f"items_{n}"] = {
            "users_per_s": round(ours),
            "matmul_users_per_s": round(bare),
            "ratio_to_matmul": round(ours / bare, 3),
        }
    return out


def run_bench(quick: bool, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Every section, with the machine and date, as one JSON-ready dict."""
    result: dict[str, Any] = {
        "machine": {"cores": os.cpu_count(), "date": dt.date.today().isoformat()},
        "quick": quick,
        "defaults": {"factors": ModelParams().factors, "negatives": ModelParams().negatives},
    }
    sections: tuple[tuple[str, Callable[[bool, Callable[[str], None]], dict[str, Any]]], ...] = (
        ("kernel", bench_kernel),
        ("topk", bench_topk),
        ("processor", bench_processor),
        ("e2e", bench_e2e),
        ("http", bench_http),
    )
    for name, section in sections:
        started = time.perf_counter()
        result[name] = section(quick, log or (lambda _: None))
        if log:
            log(f"{name}: {time.perf_counter() - started:.1f} s")
    result["redis"] = result["e2e"].pop("redis")
    result["quality"] = result["e2e"].pop("quality")
    return result


class _DroppingSink:
    """A record sink that drops everything (the processor's own cost is measured)."""

    def send(self, topic: str, key: bytes | None, value: bytes | None, headers: Any = ()) -> None:
        pass

    def flush(self) -> None:
        pass


_WARMUP_EVENTS = 2_000
"""The processor section's first batch, which compiles the kernels and is not timed."""
SMALL_BATCH_EVENTS = 500
"""Batches as the worker makes them at 10k events/s offered (they close 50 ms after their
first record in the end-to-end freshness phase)..."""
SMALL_BATCH_COMMIT_EVERY = 20
"""...and a commit every 20 of them (``COMMIT_INTERVAL_SECONDS`` = 1)."""


def bench_processor(quick: bool, _log: Callable[[str], None]) -> dict[str, Any]:
    """The worker's own cost on the end-to-end workload's first events: in batches of the
    worker's default size (a backlog), then, on a model warmed on the first half, in
    batches as small as at 10k events/s offered (``small_batches``: microseconds an
    event by stage)."""
    w = _e2e_workload(quick)
    n = 50_000 if quick else 200_000
    batch = w.batch_max_events
    records = [
        Record("events", key, value, e % w.partitions, e // w.partitions, 0)
        for e, (key, value) in enumerate(prefill_messages(w, n))
    ]
    large = _ProcessorRun(w)
    large.process(records[:_WARMUP_EVENTS])  # compiles the kernels; not timed
    seconds, stages = large.timed(records[_WARMUP_EVENTS:], batch, commit_every=1)
    small = _ProcessorRun(w)
    half = n // 2
    for first in range(0, half, 10_000):  # a model that has seen users and items
        small.process(records[first : first + 10_000])
    tail = records[half:]
    small_seconds, small_stages = small.timed(
        tail, SMALL_BATCH_EVENTS, commit_every=SMALL_BATCH_COMMIT_EVERY
    )
    written = small.store.written
    return {
        "events": n - _WARMUP_EVENTS,
        "batch_events": batch,
        "events_per_s": round((n - _WARMUP_EVENTS) / seconds),
        "stage_seconds": {stage: round(t, 3) for stage, t in stages.items()},
        "small_batches": {
            "events": len(tail),
            "batch_events": SMALL_BATCH_EVENTS,
            "commit_every_batches": SMALL_BATCH_COMMIT_EVERY,
            "events_per_s": round(len(tail) / small_seconds),
            "stage_us_per_event": {
                stage: round(t / len(tail) * 1e6, 1) for stage, t in small_stages.items()
            },
            "per_commit": {
                f"{table}_{what}": round(total / written["commits", ""])
                for (table, what), total in written.items()
                if table != "commits"
            },
        },
        "workload": "the e2e workload's first events, 2 partitions, in memory",
    }


class _CountingStore(MemoryStore):
    """The in-memory store, counting the rows and record bytes each table's commits
    carry (what a commit would write to Redis)."""

    def __init__(self) -> None:
        super().__init__()
        self.written: Counter[tuple[str, str]] = Counter()

    def commit(self, checkpoint: Checkpoint) -> CommitOutcome:
        self.written["commits", ""] += 1
        for table, rows in checkpoint.model.tables.items():
            self.written[table, "rows"] += len(rows.ids)
            self.written[table, "bytes"] += sum(map(len, rows.records))
        return super().commit(checkpoint)


class _ProcessorRun:
    """A :class:`BatchProcessor` on a fresh model, the in-memory store and a dropping sink."""

    def __init__(self, w: Workload) -> None:
        self.store = _CountingStore()
        self.registry = CollectorRegistry()
        self.metrics = WorkerMetrics(self.registry)
        self.processor = BatchProcessor(
            HybridModel(ModelParams(factors=w.factors)),
            self.store,
            _DroppingSink(),
            OutputTopics("recommendations", "dead-letter"),
            self.metrics,
            max_event_bytes=WorkerSettings().max_event_bytes,
            model_name="bench",
            stop=threading.Event(),
        )

    def process(self, records: list[Record]) -> None:
        self.processor.process(records)

    def timed(
        self, records: list[Record], batch: int, commit_every: int
    ) -> tuple[float, dict[str, float]]:
        """Seconds to process ``records`` in batches of ``batch``, committing every
        ``commit_every`` batches and at the end, and the seconds of each stage."""
        before = self._stage_seconds()
        started = time.perf_counter()
        for number, first in enumerate(range(0, len(records), batch), start=1):
            self.processor.process(records[first : first + batch], commit=False)
            if number % commit_every == 0:
                self.processor.commit()
        self.processor.commit()
        seconds = time.perf_counter() - started
        after = self._stage_seconds()
        return seconds, {stage: after[stage] - before[stage] for stage in after}

    def _stage_seconds(self) -> dict[str, float]:
        return {
            stage: self.registry.get_sample_value(
                "stream_rec_stage_seconds_total", {"stage": stage}
            )
            or 0.0
            for stage in self.metrics.stage_seconds
        }


def _e2e_workload(quick: bool) -> Workload:
    # Quick: large enough that the second worker joins (a few seconds) before the end.
    quick_size = Workload(events=200_000, users=50_000, freshness_seconds=8.0)
    return quick_size if quick else Workload()


def bench_e2e(quick: bool, log: Callable[[str], None]) -> dict[str, Any]:
    """Real Kafka, a worker process and real Redis on the fixed workload
    (:mod:`stream_rec.bench_e2e`); ``quick`` shrinks it."""
    return run_e2e(_e2e_workload(quick), log)
