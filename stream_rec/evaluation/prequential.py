"""Prequential (test-then-learn) evaluation over an event stream in time order.

For every rating, each model predicts before it learns: MAE and RMSE. For every S-th
positive event (a rating >= 4, or any click or watch) on an item new to that user, each
model ranks all the items it has seen so far, excluding the user's seen items, just
before it learns that event: hit@10 if the event's item is in the top 10, recall@10 (=
hit rate over these queries), NDCG@10 = 1/log2(rank + 2). On the lists it served it
reports catalog coverage@10, intra-list diversity (1 - mean pairwise genre Jaccard),
novelty (mean -log2 of the items' share of users so far) and recall@10 for cold users
(fewer than 5 events before the query).
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt

from stream_rec.model import CONSUMED_KINDS, EventKind, InteractionBatch

COLD_EVENTS = 5
"""A user with fewer events than this before a query is a cold user."""


class EvaluatedModel(Protocol):
    """What the harness needs of a model."""

    name: str

    def learn(self, events: InteractionBatch) -> npt.NDArray[np.float64]:
        """Apply the events in order; for each, the rating predicted just before its own
        step (NaN where the model predicts no rating)."""

    def recommend(self, user_id: str, k: int) -> list[str]:
        """The user's top-k item ids, excluding items the user consumed."""


@dataclass
class ModelReport:
    """Figures of one model over one stream."""

    mae: float | None
    rmse: float | None
    recall: float
    ndcg: float
    coverage: float
    diversity: float | None
    novelty: float
    cold_recall: float | None
    events_per_s: float
    queries: int
    cold_queries: int
    curve_events: list[int] = field(default_factory=list)
    curve_recall: list[float] = field(default_factory=list)
    curve_rmse: list[float | None] = field(default_factory=list)

    def as_json(self) -> dict[str, float | int | None]:
        return {
            "mae": self.mae,
            "rmse": self.rmse,
            "recall@10": self.recall,
            "ndcg@10": self.ndcg,
            "coverage@10": self.coverage,
            "diversity@10": self.diversity,
            "novelty@10": self.novelty,
            "cold_recall@10": self.cold_recall,
            "events_per_s": self.events_per_s,
            "queries": self.queries,
            "cold_queries": self.cold_queries,
        }


@dataclass(frozen=True)
class EvaluationProtocol:
    """The evaluation's knobs: query every ``every``-th novel positive, lists of ``k``."""

    every: int = 10
    k: int = 10
    positive_rating: float = 4.0
    points: int = 40


def is_positive(kind: int, value: float, positive_rating: float) -> bool:
    """A positive for ranking: a click, a watch, or a rating at or above the threshold.

    >>> is_positive(int(EventKind.RATING), 3.5, 4.0), is_positive(int(EventKind.CLICK), 0.0, 4.0)
    (False, True)
    """
    if kind == EventKind.RATING:
        return value >= positive_rating
    return kind in (EventKind.CLICK, EventKind.WATCH)


def query_positions(events: InteractionBatch, protocol: EvaluationProtocol) -> list[int]:
    """Indices of the ranking queries: every S-th positive on an item new to its user."""
    seen: dict[str, set[str]] = defaultdict(set)
    consumed = {int(k) for k in CONSUMED_KINDS}
    positions: list[int] = []
    novel = 0
    kinds = events.kinds.tolist()
    values = events.values.tolist()
    for e, (user, item) in enumerate(zip(events.user_ids, events.item_ids, strict=True)):
        if is_positive(kinds[e], values[e], protocol.positive_rating) and item not in seen[user]:
            if novel % protocol.every == 0:
                positions.append(e)
            novel += 1
        if kinds[e] in consumed:
            seen[user].add(item)
    return positions


def evaluate(
    model: EvaluatedModel,
    events: InteractionBatch,
    protocol: EvaluationProtocol,
    item_genres: Mapping[str, frozenset[str]] | None = None,
    queries: Sequence[int] | None = None,
    progress: Callable[[int], None] | None = None,
) -> ModelReport:
    """Run the stream through ``model`` test-then-learn; returns its figures."""
    queries = query_positions(events, protocol) if queries is None else queries
    n = len(events)
    predictions = np.full(n, np.nan)
    hits = np.zeros(len(queries))
    gains = np.zeros(len(queries))
    cold: list[bool] = []
    lists: list[list[str]] = []
    novelty: list[float] = []
    users_so_far: set[str] = set()
    item_users: dict[str, int] = defaultdict(int)
    user_events: dict[str, int] = defaultdict(int)
    learn_seconds = 0.0
    start = 0
    for q, position in enumerate([*queries, n]):
        started = time.perf_counter()
        if position > start:
            predictions[start:position] = model.learn(events.slice(start, position))
        learn_seconds += time.perf_counter() - started
        _count_users(events, start, position, users_so_far, item_users, user_events)
        start = position
        if position == n:
            break
        user, target = events.user_ids[position], events.item_ids[position]
        listed = model.recommend(user, protocol.k)
        lists.append(listed)
        cold.append(user_events[user] < COLD_EVENTS)
        if target in listed:
            hits[q] = 1.0
            gains[q] = 1.0 / math.log2(listed.index(target) + 2)
        share = [max(item_users[i], 1) / max(len(users_so_far), 1) for i in listed]
        novelty.extend(-math.log2(s) for s in share)
        if progress is not None:
            progress(q)
    return _report(
        events,
        protocol,
        predictions,
        hits,
        gains,
        cold,
        lists,
        novelty,
        item_genres,
        n / learn_seconds if learn_seconds else 0.0,
        queries,
    )


def _count_users(
    events: InteractionBatch,
    start: int,
    stop: int,
    users: set[str],
    item_users: dict[str, int],
    user_events: dict[str, int],
) -> None:
    seen_pairs: set[tuple[str, str]] = set()
    for user, item in zip(events.user_ids[start:stop], events.item_ids[start:stop], strict=True):
        users.add(user)
        user_events[user] += 1
        if (user, item) not in seen_pairs:
            seen_pairs.add((user, item))
            item_users[item] += 1


def _report(
    events: InteractionBatch,
    protocol: EvaluationProtocol,
    predictions: npt.NDArray[np.float64],
    hits: npt.NDArray[np.float64],
    gains: npt.NDArray[np.float64],
    cold: list[bool],
    lists: list[list[str]],
    novelty: list[float],
    item_genres: Mapping[str, frozenset[str]] | None,
    events_per_s: float,
    queries: Sequence[int],
) -> ModelReport:
    ratings = events.kinds == EventKind.RATING
    errors = (predictions - events.values)[ratings & np.isfinite(predictions)]
    cold_mask = np.array(cold, bool)
    catalog = len(set(events.item_ids))
    listed = {item for items in lists for item in items}
    report = ModelReport(
        mae=float(np.abs(errors).mean()) if errors.size else None,
        rmse=float(np.sqrt((errors**2).mean())) if errors.size else None,
        recall=float(hits.mean()) if hits.size else 0.0,
        ndcg=float(gains.mean()) if gains.size else 0.0,
        coverage=len(listed) / catalog if catalog else 0.0,
        diversity=_diversity(lists, item_genres) if item_genres else None,
        novelty=float(np.mean(novelty)) if novelty else 0.0,
        cold_recall=float(hits[cold_mask].mean()) if cold_mask.any() else None,
        events_per_s=events_per_s,
        queries=len(queries),
        cold_queries=int(cold_mask.sum()),
    )
    _curves(report, events, protocol, predictions, hits, queries)
    return report


def _diversity(lists: list[list[str]], genres: Mapping[str, frozenset[str]]) -> float | None:
    """1 - mean pairwise Jaccard similarity of the listed items' genre sets."""
    values = []
    for items in lists:
        sets = [genres.get(i, frozenset()) for i in items]
        pairs = [
            len(a & b) / len(a | b) if a | b else 1.0
            for n, a in enumerate(sets)
            for b in sets[n + 1 :]
        ]
        if pairs:
            values.append(1.0 - float(np.mean(pairs)))
    return float(np.mean(values)) if values else None


def _curves(
    report: ModelReport,
    events: InteractionBatch,
    protocol: EvaluationProtocol,
    predictions: npt.NDArray[np.float64],
    hits: npt.NDArray[np.float64],
    queries: Sequence[int],
) -> None:
    """Recall@10 and RMSE so far, at ``points`` places along the stream, for the plot."""
    n = len(events)
    edges = np.linspace(0, n, protocol.points + 1).astype(int)[1:]
    positions = np.asarray(queries, np.int64)
    ratings = (events.kinds == EventKind.RATING) & np.isfinite(predictions)
    for hi in edges.tolist():
        asked = positions < hi
        err = (predictions[:hi] - events.values[:hi])[ratings[:hi]]
        report.curve_events.append(int(hi))
        report.curve_recall.append(float(hits[asked].mean()) if asked.any() else float("nan"))
        report.curve_rmse.append(float(np.sqrt((err**2).mean())) if err.size else None)
