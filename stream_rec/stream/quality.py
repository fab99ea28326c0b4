"""Online quality of the lists the worker publishes, measured before each update.

For every positive event (a click, a positive watch, a rating >= the threshold) on an
item new to its user (lists exclude what the user took before) the tracker asks: was the
item in the list last published to that user? That is hit@k, an
online CTR proxy, and NDCG@k from the item's rank. Ratings give the error of the
prediction made before the step (RMSE). Over the lists published lately it reports
catalog coverage (distinct listed items / items known) and intra-list diversity
(1 - mean pairwise Jaccard of the listed items' feature sets). A drift detector (river's
ADWIN) watches the hit rate of each batch and counts the changes it detects.
Diversity itself is computed by the model (:meth:`HybridModel.list_diversity`).
"""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any

from river.drift import ADWIN

from stream_rec.events import Interaction, WatchEvent
from stream_rec.model import ModelParams

_new_detector: Callable[[], Any] = ADWIN  # river's drift detectors carry no annotations


def is_positive(event: Interaction, params: ModelParams, item_duration: float = 0.0) -> bool:
    """Whether the model takes ``event`` as a positive (the kernels' rule, in Python);
    ``item_duration`` is the item's length from its metadata (0 if unknown)."""
    if event.type == "click":
        return params.click_weight > 0
    if isinstance(event, WatchEvent):
        length = event.duration_seconds or item_duration or params.default_duration_seconds
        return params.watch_weight > 0 and event.watch_seconds / length >= params.min_watch_fraction
    if event.type == "rating":
        return event.rating >= params.positive_rating
    return False


@dataclass(frozen=True)
class QualityFigures:
    """The tracker's current figures; None where nothing has been measured yet."""

    hit_rate: float | None
    ndcg: float | None
    rmse: float | None
    coverage: float | None
    diversity: float | None
    drifts: int


class OnlineQuality:
    """Rolling online figures over the last ``window`` measurements of each kind."""

    def __init__(
        self, window: int = 5_000, list_window: int = 2_000, diversity_every: int = 10
    ) -> None:
        self._hits: deque[float] = deque(maxlen=window)
        self._gains: deque[float] = deque(maxlen=window)
        self._squared: deque[float] = deque(maxlen=window)
        self._last: dict[str, tuple[str, ...]] = {}
        self._listed: deque[tuple[str, ...]] = deque(maxlen=list_window)
        self._listed_counts: Counter[str] = Counter()
        self._diversity: deque[float] = deque(maxlen=max(1, list_window // diversity_every))
        self._diversity_every = diversity_every
        self._lists_seen = 0
        self._drift = _new_detector()
        self.drifts = 0

    def observe_positives(self, users: Sequence[str], items: Sequence[str]) -> tuple[int, int]:
        """Score each positive against the list its user had when it happened; returns
        how many were scored (their user had a list) and how many of those hit."""
        batch_hits = []
        for user, item in zip(users, items, strict=True):
            listed = self._last.get(user)
            if listed is None:
                continue
            try:
                rank = listed.index(item)
            except ValueError:
                hit, gain = 0.0, 0.0
            else:
                hit, gain = 1.0, 1.0 / math.log2(rank + 2)
            self._hits.append(hit)
            self._gains.append(gain)
            batch_hits.append(hit)
        if batch_hits:
            self._drift.update(sum(batch_hits) / len(batch_hits))
            if self._drift.drift_detected:
                self.drifts += 1
        return len(batch_hits), int(sum(batch_hits))

    def observe_errors(self, errors: Sequence[float]) -> None:
        """Rating errors of predictions made before the step."""
        self._squared.extend(e * e for e in errors)

    def observe_lists(
        self,
        lists: Sequence[tuple[str, tuple[str, ...]]],
        diversity: Callable[[int], float | None],
    ) -> None:
        """The lists just published: (user, item ids best first). One list in
        ``diversity_every`` has its diversity measured: ``diversity(position)``, None if
        it has none (called only for lists whose figure the window would still hold)."""
        last = self._last
        for user, items in lists:
            last[user] = items
        # Only the newest ``list_window`` lists stay in the coverage window: the older ones
        # would leave it again within this call. The counts hold only listed items (> 0),
        # added and taken away once a call (a Counter's subtract is a loop in Python).
        listed, counts = self._listed, self._listed_counts
        window = listed.maxlen or 0
        kept = [items for _, items in lists[max(0, len(lists) - window) :]]
        leaving: list[str] = []
        for _ in range(max(0, len(listed) + len(kept) - window)):
            leaving.extend(listed.popleft())
        listed.extend(kept)
        counts.update(chain.from_iterable(kept))
        for item, n in Counter(leaving).items():
            left = counts[item] - n
            if left > 0:
                counts[item] = left
            else:
                del counts[item]
        seen, every = self._lists_seen, self._diversity_every
        self._lists_seen += len(lists)
        # 1-based list numbers seen+1 .. seen+len: those divisible by ``every`` are sampled;
        # newest first, until as many figures as the window holds.
        figures: list[float] = []
        for position in reversed(range(every - 1 - seen % every, len(lists), every)):
            if len(figures) == self._diversity.maxlen:
                break
            value = diversity(position)
            if value is not None:
                figures.append(value)
        self._diversity.extend(reversed(figures))

    def figures(self, catalog: int) -> QualityFigures:
        listed = len(self._listed_counts)
        return QualityFigures(
            hit_rate=_mean(self._hits),
            ndcg=_mean(self._gains),
            rmse=math.sqrt(_mean(self._squared) or 0.0) if self._squared else None,
            coverage=listed / catalog if catalog and self._listed else None,
            diversity=_mean(self._diversity),
            drifts=self.drifts,
        )


def _mean(values: deque[float]) -> float | None:
    return sum(values) / len(values) if values else None
