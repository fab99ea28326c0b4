"""One micro-batch, one way through: guard -> decode -> model -> top-k -> publish -> store.

The order makes a crash at any point safe:
1. records already applied (below the stored offset) and duplicate event ids are skipped;
2. rejected messages and the new lists are sent and flushed (acknowledged by Kafka);
3. then the batch's state, the partitions' next offsets and their de-duplication windows
   go to the store in one fenced, atomic step;
4. then the caller may commit the offsets to Kafka (for lag tooling only).
A crash before 3 replays the batch from the stored offsets: the replay computes the same
lists with the same versions (a list's version is its user's count of applied events), so
a consumer sees at most a repeat, never a gap.
"""

from __future__ import annotations

import heapq
import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from typing import TypeVar

import numpy as np
from prometheus_client import Counter as Counter_

from stream_rec.events import (
    REJECTION_REASONS,
    Context,
    Interaction,
    Profile,
    RatingEvent,
    Rejection,
    UserProfile,
    WatchEvent,
    decode_event,
    decode_profile,
)
from stream_rec.faults import crash_point
from stream_rec.metrics import WorkerMetrics
from stream_rec.model import KIND_NAMES, AppliedBatch, HybridModel, InteractionBatch
from stream_rec.store import Checkpoint, CommitOutcome, StateStore, StoreUnavailable
from stream_rec.stream.ledger import PartitionLedger, partition_key
from stream_rec.stream.lists import list_message, rounded_scores
from stream_rec.stream.profiles import apply_profiles
from stream_rec.stream.quality import OnlineQuality, is_positive
from stream_rec.stream.records import RecordSink, SourceRecord
from stream_rec.stream.retry import with_backoff

log = logging.getLogger(__name__)
_T = TypeVar("_T")

REASON_HEADER = "stream-rec.reason"
DETAIL_HEADER = "stream-rec.detail"
SOURCE_HEADER = "stream-rec.source"


@dataclass(frozen=True)
class BatchResult:
    """What the caller needs after a batch: next offsets per (topic, partition)."""

    next_offsets: dict[tuple[str, int], int]
    applied: int
    rejected: int
    published: int
    duplicates: int = 0
    replayed: int = 0


@dataclass(frozen=True)
class _Published:
    """The lists of one batch: the messages and their versions by user, and (user, item
    ids, item rows)."""

    messages: dict[str, bytes]
    versions: dict[str, int]
    lists: list[tuple[str, tuple[str, ...], list[int]]]


@dataclass(frozen=True)
class _Decoding:
    """The batch's valid new events in the order they are applied, each one's record
    time (seconds), and what was left out."""

    events: list[Interaction]
    record_ts: list[float]
    rejected: Counter[str]
    duplicates: int


@dataclass
class _Uncommitted:
    """What batches processed since the last commit changed, besides the model's rows
    (which the model tracks itself): new seen items, lists and their versions, and next
    offsets."""

    seen: dict[str, list[str]] = field(default_factory=dict)
    lists: dict[str, bytes] = field(default_factory=dict)
    versions: dict[str, int] = field(default_factory=dict)
    next_offsets: dict[tuple[str, int], int] = field(default_factory=dict)

    def add(
        self,
        model: HybridModel,
        applied: AppliedBatch | None,
        published: _Published,
        next_offsets: dict[tuple[str, int], int],
    ) -> None:
        if applied is not None:
            user_ids, item_ids = model.users.ids, model.items.ids
            for u, new in applied.new_seen.items():
                self.seen.setdefault(user_ids[u], []).extend(item_ids[i] for i in new)
        self.lists.update(published.messages)  # a user's newest list replaces the older
        self.versions.update(published.versions)
        for partition, nxt in next_offsets.items():
            self.next_offsets[partition] = max(self.next_offsets.get(partition, 0), nxt)


class _Laps:
    """Adds the time since the previous lap to a stage's counter (where batches go)."""

    def __init__(self, counters: Mapping[str, Counter_], started: float) -> None:
        self._counters = counters
        self._last = started

    def __call__(self, stage: str) -> None:
        now = time.perf_counter()
        self._counters[stage].inc(now - self._last)
        self._last = now


@dataclass(frozen=True)
class OutputTopics:
    """The topics the processor writes, and the profiles topic it tells apart."""

    recommendations: str
    dead_letter: str
    profiles: str = ""


class BatchProcessor:
    """Turns batches of consumed records into model steps, lists and one state commit.

    ``retry_initial``/``retry_max`` bound the backoff while the store is unavailable;
    ``stop`` ends such waiting (the batch is then not committed, and will be replayed).
    ``dedup_window``: an event id seen among a partition's last that many offsets is
    skipped. A :class:`~stream_rec.store.StoreFenced` from the commit propagates: the
    model then holds steps the store does not, and the caller must :meth:`restore`.
    ``shared_refresh_seconds``: while other workers write the shared rows too, how often
    this one takes theirs (see :class:`~stream_rec.config.WorkerSettings`). The model's
    new ids are numbered by the store's registry (:meth:`StateStore.register`), so that
    every worker on the store agrees on rows.
    """

    def __init__(
        self,
        model: HybridModel,
        store: StateStore,
        sink: RecordSink,
        topics: OutputTopics,
        metrics: WorkerMetrics,
        *,
        max_event_bytes: int,
        model_name: str,
        stop: threading.Event,
        retry_initial: float = 0.1,
        retry_max: float = 5.0,
        dedup_window: int = 100_000,
        list_ttl_seconds: int = 0,
        shared_refresh_seconds: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.model = model
        model.use_registry(self._register)
        self._store = store
        self._sink = sink
        self._topics = topics
        self._metrics = metrics
        self._max_event_bytes = max_event_bytes
        self._model_name = model_name
        self._stop = stop
        self._retry = (retry_initial, retry_max)
        self._clock = clock
        self._list_ttl = list_ttl_seconds
        self.ledger = PartitionLedger(dedup_window)
        self._uncommitted = _Uncommitted()
        self.quality = OnlineQuality()
        self._drifts_counted = 0
        self._contexts_dropped_counted = 0
        self._generation: int | None = None
        """The store generation the model's shared rows are in sync with (None: not)."""
        self._whole_generation: int | None = None
        """The store generation the whole model is in sync with, the users of every
        partition included (None: another worker has committed since)."""
        self._refresh_every = shared_refresh_seconds
        self._next_refresh = 0.0

    def restore(self) -> dict[str, int]:
        """Load the stored state into a fresh model (any change not committed is dropped:
        those batches are applied again); return the stored next offsets."""
        layout = self.model.layout
        snapshot = self._with_store(lambda: self._store.load(layout), "loading state")
        if len(self.model.users) or len(self.model.items) or len(self.model.user_features):
            self.model = HybridModel(self.model.params)
            self.model.use_registry(self._register)
        self.model.restore(snapshot.model, snapshot.seen, snapshot.registry)
        self._generation = self._whole_generation = snapshot.generation
        self._uncommitted = _Uncommitted()  # the uncommitted batches are applied again
        self.ledger.load(snapshot.offsets, snapshot.dedup)
        self._metrics.users.set(len(self.model.users))
        self._metrics.items.set(len(self.model.items))
        log.info(
            "restored %d users, %d items, %d partition offsets",
            len(self.model.users),
            len(self.model.items),
            len(snapshot.offsets),
        )
        return snapshot.offsets

    def check_store(self) -> None:
        """Stop (:class:`StoreStateMismatch`) if the store holds state of another schema or
        model shape; the state itself is loaded once partitions are assigned."""
        layout = self.model.layout
        self._with_store(lambda: self._store.check(layout), "checking the stored state")

    def assign(self, partitions: Sequence[str]) -> dict[str, int]:
        """Claim ``partitions`` (fencing any earlier owner's writes) and return the stored
        next offset of each that has one, where the caller must resume."""
        epochs = self._with_store(lambda: self._store.claim(partitions), "claiming partitions")
        self.ledger.claimed(epochs)
        generation = self._with_store(self._store.generation, "reading the generation")
        if generation != self._whole_generation:
            # Other workers committed since this one loaded: the users of these partitions
            # may have moved on under another owner. (Revocation committed everything of
            # this worker's, so nothing is lost by reloading.)
            self.restore()
        stored = self._with_store(self._store.offsets, "reading offsets")
        for partition in partitions:
            if partition in stored:
                self.ledger.next_offsets[partition] = stored[partition]
        return {p: stored[p] for p in partitions if p in stored}

    def revoke(self, partitions: Sequence[str]) -> None:
        """These partitions are no longer this worker's to write."""
        self.ledger.released(partitions)

    def process(self, records: Sequence[SourceRecord], commit: bool = True) -> BatchResult:
        """Apply one batch end to end: its lists are published (flushed) when this
        returns, and with ``commit`` its state is in the store too; without, the state
        waits for :meth:`commit` (which writes every batch since the last commit in one
        atomic step: fewer, larger writes under load)."""
        started = time.perf_counter()
        lap = _Laps(self._metrics.stage_seconds, started)
        fresh = self.ledger.fresh(records)
        self._metrics.replayed.inc(len(records) - len(fresh))
        profiles_topic = self._topics.profiles
        profile_users, profile_ts = self._apply_profiles(
            [r for r in fresh if r.topic == profiles_topic]
        )
        decoding = self._decode([r for r in fresh if r.topic != profiles_topic])
        events = decoding.events
        lap("decode")
        applied = self.model.apply(self._columns(events)) if events else None
        lap("model")
        published = self._publish_lists(events, applied, profile_users, profile_ts)
        lists = published.messages
        lap("lists")
        self._sink.flush()  # lists and dead letters acknowledged before the state moves
        lap("flush")
        crash_point("after-flush")
        published_at = self._clock()
        next_offsets = _next_offsets(fresh)  # a partition's stored offset never goes back
        self._uncommitted.add(self.model, applied, published, next_offsets)
        self.ledger.processed(next_offsets)
        if commit:
            self.commit(lap)
        self._observe(records, decoding, applied, lists, published_at, profile_ts)
        if applied is not None:
            self._measure(events, applied, published)
        lap("observe")
        self._metrics.batch_duration.observe(time.perf_counter() - started)
        return BatchResult(
            next_offsets,
            len(events),
            sum(decoding.rejected.values()),
            len(lists),
            decoding.duplicates,
            len(records) - len(fresh),
        )

    def _apply_profiles(
        self, records: Sequence[SourceRecord]
    ) -> tuple[list[int], dict[int, float]]:
        """Profiles of the batch into the model (before its events); rejects to dead
        letters. Returns the rows of the users whose features changed, and for each the
        record time of its profile (seconds)."""
        valid: list[Profile] = []
        record_ts: dict[str, float] = {}
        rejected: Counter[str] = Counter()
        for record in records:
            decoded = decode_profile(record.value, self._max_event_bytes)
            if isinstance(decoded, Rejection):
                self._dead_letter(record, decoded)
                rejected[decoded.reason] += 1
                continue
            valid.append(decoded)
            if isinstance(decoded, UserProfile):
                record_ts[decoded.user_id] = record.timestamp / 1000.0
        self._metrics.count_profiles(len(records), len(valid), rejected)
        rows = apply_profiles(self.model, valid)
        ids = self.model.users.ids
        return rows, {row: record_ts.get(ids[row], 0.0) for row in rows}

    def _decode(self, records: Sequence[SourceRecord]) -> _Decoding:
        """Valid new events merged across partitions by event time; rejects to dead
        letters, duplicates (an event id already in the partition's window) skipped."""
        runs: dict[tuple[str, int], tuple[list[Interaction], list[int], list[float]]] = {}
        rejected: Counter[str] = Counter()
        max_bytes = self._max_event_bytes
        for record in records:
            decoded = decode_event(record.value, max_bytes)
            if isinstance(decoded, Rejection):
                self._dead_letter(record, decoded)
                rejected[decoded.reason] += 1
                continue
            run = runs.get((record.topic, record.partition))
            if run is None:
                run = runs[(record.topic, record.partition)] = ([], [], [])
            run[0].append(decoded)
            run[1].append(record.offset)
            run[2].append(record.timestamp / 1000.0)
        duplicates = 0
        kept: list[tuple[list[Interaction], list[float]]] = []
        for (topic, partition), (events, offsets, stamps) in runs.items():
            ids = [event.event_id for event in events]
            first = self.ledger.first_seen(partition_key(topic, partition), ids, offsets)
            if len(first) == len(events):
                kept.append((events, stamps))
            else:
                duplicates += len(events) - len(first)
                kept.append(([events[i] for i in first], [stamps[i] for i in first]))
        if len(kept) == 1:
            return _Decoding(kept[0][0], kept[0][1], rejected, duplicates)
        # Each partition keeps its own order; across partitions the earlier event goes
        # first (ties: the partition first seen in the batch).
        heads = [
            zip([event.ts for event in events], repeat(run), range(len(events)))
            for run, (events, _) in enumerate(kept)
        ]
        order = [(run, position) for _, run, position in heapq.merge(*heads)]
        return _Decoding(
            [kept[run][0][position] for run, position in order],
            [kept[run][1][position] for run, position in order],
            rejected,
            duplicates,
        )

    def _dead_letter(self, record: SourceRecord, rejection: Rejection) -> None:
        headers = [
            (REASON_HEADER, rejection.reason.encode()),
            (DETAIL_HEADER, rejection.detail.encode()),
            (SOURCE_HEADER, f"{record.topic}:{record.partition}:{record.offset}".encode()),
        ]
        self._sink.send(self._topics.dead_letter, record.key, record.value, headers)

    @staticmethod
    def _columns(events: Sequence[Interaction]) -> InteractionBatch:
        kinds: list[int] = []
        values: list[float] = []
        durations: list[float] = []
        nan = math.nan
        for event in events:
            kinds.append(KIND_NAMES[event.type])
            if isinstance(event, WatchEvent):
                values.append(event.watch_seconds)
                durations.append(nan if event.duration_seconds is None else event.duration_seconds)
            else:
                values.append(event.rating if isinstance(event, RatingEvent) else 0.0)
                durations.append(nan)
        contexts = [event.context for event in events]
        return InteractionBatch(
            [event.user_id for event in events],
            [event.item_id for event in events],
            np.array(kinds, np.int8),
            np.array(values, np.float32),
            np.array(durations, np.float32),
            np.array([event.ts for event in events], np.float64),
            contexts if any(contexts) else None,
        )

    def _publish_lists(
        self,
        events: Sequence[Interaction],
        applied: AppliedBatch | None,
        profile_users: Sequence[int],
        profile_ts: dict[int, float],
    ) -> _Published:
        """A fresh top-k list for every user the batch changed (by events or by a new
        profile: a cold user gets its first list from its features at once)."""
        user_ids = self.model.users.ids
        newest_ts = {user_ids[row]: ts for row, ts in profile_ts.items()}
        newest_context: dict[str, Context] = {}
        for event in events:  # in event-time order: the last one of a user is its newest
            newest_ts[event.user_id] = max(newest_ts.get(event.user_id, 0.0), event.ts)
            if event.context:
                newest_context[event.user_id] = event.context
            else:
                newest_context.pop(event.user_id, None)
        touched = [] if applied is None else applied.user_rows.tolist()
        user_rows = np.fromiter(dict.fromkeys([*touched, *profile_users]), np.int64)
        if user_rows.size == 0:
            return _Published({}, {}, [])
        # Each list is for the context of the user's newest event (and its hour band).
        order = [user_ids[r] for r in user_rows.tolist()]
        contexts = self.model.contexts.lookup(
            [newest_context.get(u) for u in order], [newest_ts[u] for u in order]
        )
        rows, scores = self.model.recommend(user_rows, contexts=contexts)
        item_ids = self.model.items.ids
        generated_at = self._clock()
        lists: dict[str, bytes] = {}
        entries: list[tuple[str, tuple[str, ...], list[int]]] = []
        send, topic, model_name = self._sink.send, self._topics.recommendations, self._model_name
        # Events applied plus profile updates: it grows with every list, and a replay cut
        # into other batches gives each list the same version again.
        versions = self.model.versions(user_rows).tolist()
        for user_row, version, row_items, row_scores in zip(
            user_rows.tolist(), versions, rows.tolist(), rounded_scores(scores), strict=True
        ):
            user = user_ids[user_row]
            listed = [i for i in row_items if i >= 0]
            listed_ids = tuple([item_ids[i] for i in listed])
            message = list_message(
                user,
                zip(listed_ids, row_scores, strict=False),  # the -1 tail is not listed
                version,
                model_name,
                newest_ts[user],
                generated_at,
                newest_context.get(user),
            )
            lists[user] = message
            entries.append((user, listed_ids, listed))
            send(topic, user.encode(), message)
        return _Published(lists, dict(zip(lists, versions, strict=True)), entries)

    def commit(self, lap: _Laps | None = None) -> dict[tuple[str, int], int]:
        """Write the state of every batch processed since the last commit, with their
        partitions' next offsets, in one fenced atomic step; returns those offsets (empty
        when there was nothing to write). Raises StoreFenced if a partition was claimed
        by another worker meanwhile (nothing is written then)."""
        pending = self._uncommitted
        if not pending.next_offsets:
            return {}
        lap = lap or _Laps(self._metrics.stage_seconds, time.perf_counter())
        checkpoint = self._checkpoint(pending)
        lap("checkpoint")
        redis_started = time.perf_counter()
        outcome = self._with_store(lambda: self._store.commit(checkpoint), "committing state")
        self.ledger.committed(checkpoint.offsets)
        self._metrics.redis_duration.observe(time.perf_counter() - redis_started)
        self._uncommitted = _Uncommitted()
        self._synced(checkpoint, outcome)
        lap("commit")
        return pending.next_offsets

    def _synced(self, checkpoint: Checkpoint, outcome: CommitOutcome) -> None:
        """After a commit: the shared rows written become the model's base; if other
        workers wrote since the last sync, their rows are taken at most every
        ``shared_refresh_seconds`` (at once after a replayed commit, whose merged rows
        this worker has not seen)."""
        whole = self._whole_generation
        self._whole_generation = (
            outcome.generation if whole is not None and outcome.generation == whole + 1 else None
        )
        if outcome.replayed:
            self._generation, self._next_refresh = None, 0.0
        elif outcome.rebased is not None:
            self.model.synced(outcome.rebased)
            self._generation = None
            self._metrics.merged_commits.inc()
        else:
            self.model.synced(checkpoint.model)
            self._generation = outcome.generation
        now = time.monotonic()
        if self._generation is None and now >= self._next_refresh:
            self._next_refresh = now + self._refresh_every
            layout = self.model.layout
            shared = self._with_store(
                lambda: self._store.load_shared(layout), "reading the shared rows"
            )
            self.model.refresh(shared.model, shared.registry)
            self._generation = shared.generation
            self._metrics.shared_refreshes.inc()

    def _register(self, table: str, ids: Sequence[str], known: int) -> Sequence[str]:
        return self._with_store(
            lambda: self._store.register(table, ids, known), "numbering new ids"
        )

    def _checkpoint(self, pending: _Uncommitted) -> Checkpoint:
        model = self.model
        ledger = self.ledger.entries(
            {partition_key(t, p): nxt for (t, p), nxt in pending.next_offsets.items()}
        )
        return Checkpoint(
            model=model.take_changes(),
            seen=pending.seen,
            lists=pending.lists,
            versions=pending.versions,
            offsets=ledger.offsets,
            layout=model.layout,
            epochs=ledger.epochs,
            dedup=ledger.dedup,
            dedup_from=ledger.dedup_from,
            seen_cap=model.params.max_seen_items,
            list_ttl_seconds=self._list_ttl,
            generation=self._generation,
            rebase=model.merge_changes,
        )

    def _observe(
        self,
        records: Sequence[SourceRecord],
        decoding: _Decoding,
        applied: AppliedBatch | None,
        lists: dict[str, bytes],
        published_at: float,
        profile_ts: dict[int, float],
    ) -> None:
        metrics = self._metrics
        events, rejected = decoding.events, decoding.rejected
        by_type: Counter[str] = Counter([event.type for event in events])
        consumed = sum(1 for r in records if r.topic != self._topics.profiles)
        metrics.count_batch(consumed, by_type, {r: rejected[r] for r in REJECTION_REASONS})
        metrics.deduplicated.inc(decoding.duplicates)
        metrics.batch_events.observe(len(records))
        metrics.published.inc(len(lists))
        user_ids = self.model.users.ids
        newest_record = {user_ids[row]: ts for row, ts in profile_ts.items()}
        for event, record_ts in zip(events, decoding.record_ts, strict=True):
            user = event.user_id
            newest_record[user] = max(newest_record.get(user, 0.0), record_ts)
        metrics.observe_freshness(
            (newest_record[u] for u in lists if u in newest_record), published_at
        )
        metrics.users.set(len(self.model.users))
        metrics.items.set(len(self.model.items))
        if not events or applied is None:
            return
        metrics.mark_newest(max([event.ts for event in events]), max(newest_record.values()))
        if applied.ratings:
            metrics.loss["squared_error"].set(applied.squared_error / applied.ratings)
        if applied.ranking_steps:
            metrics.loss["ranking"].set(applied.ranking_loss / applied.ranking_steps)

    def _measure(
        self, events: Sequence[Interaction], applied: AppliedBatch, published: _Published
    ) -> None:
        """Online quality: this batch's positives against the lists their users had, the
        ratings' errors before their steps, then the new lists' coverage and diversity."""
        quality, params, metrics, model = self.quality, self.model.params, self._metrics, self.model
        # Lists exclude what their user took already: score only positives on new items.
        user_ids, item_ids = model.users.ids, model.items.ids
        firsts = {(user_ids[u], item_ids[i]) for u, new in applied.new_seen.items() for i in new}
        positives = [
            event
            for event in events
            if (event.user_id, event.item_id) in firsts
            and is_positive(event, params, self._item_duration(event.item_id))
        ]
        scored, hits = quality.observe_positives(
            [e.user_id for e in positives], [e.item_id for e in positives]
        )
        metrics.positives_scored.inc(scored)
        metrics.hits.inc(hits)
        errors = [
            event.rating - prediction
            for event, prediction in zip(events, applied.predictions.tolist(), strict=True)
            if isinstance(event, RatingEvent) and not math.isnan(prediction)
        ]
        quality.observe_errors(errors)
        quality.observe_lists(
            [(u, items) for u, items, _ in published.lists],
            lambda position: model.list_diversity(published.lists[position][2]),
        )
        figures = quality.figures(len(self.model.items))
        for gauge, value in (
            (metrics.hit_ratio, figures.hit_rate),
            (metrics.ndcg, figures.ndcg),
            (metrics.rmse, figures.rmse),
            (metrics.coverage, figures.coverage),
            (metrics.diversity, figures.diversity),
        ):
            if value is not None:
                gauge.set(value)
        if figures.drifts > self._drifts_counted:
            metrics.drifts.inc(figures.drifts - self._drifts_counted)
            self._drifts_counted = figures.drifts
        metrics.features["user"].set(len(self.model.user_features) - len(self.model.contexts))
        metrics.features["item"].set(len(self.model.item_features))
        metrics.context_values.set(len(self.model.contexts))
        dropped = self.model.contexts.dropped
        if dropped > self._contexts_dropped_counted:
            metrics.context_values_dropped.inc(dropped - self._contexts_dropped_counted)
            self._contexts_dropped_counted = dropped

    def _item_duration(self, item_id: str) -> float:
        row = self.model.items.row_of(item_id)
        return 0.0 if row is None else float(self.model.items.side["duration"][row, 0])

    def _with_store(self, call: Callable[[], _T], what: str) -> _T:
        initial, maximum = self._retry
        return with_backoff(
            call,
            (StoreUnavailable,),
            what=what,
            initial=initial,
            maximum=maximum,
            stop=self._stop,
            on_failure=lambda _exc: self._metrics.store_errors.inc(),
        )


def _next_offsets(records: Sequence[SourceRecord]) -> dict[tuple[str, int], int]:
    """Per (topic, partition), one past the highest offset in the batch."""
    nxt: dict[tuple[str, int], int] = {}
    for record in records:
        key = (record.topic, record.partition)
        nxt[key] = max(nxt.get(key, 0), record.offset + 1)
    return nxt
