"""The models the evaluation compares: stream-rec itself (and its parts), popularity, river.

Each implements :class:`stream_rec.evaluation.prequential.EvaluatedModel`.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import numpy.typing as npt
from river import optim, reco

from stream_rec.model import CONSUMED_KINDS, EventKind, HybridModel, InteractionBatch, ModelParams

_CONSUMED = {int(k) for k in CONSUMED_KINDS}


MAX_TAGS = 20
"""Tags kept per item: the most applied so far."""


class StreamRecModel:
    """The hybrid model as the worker runs it. Features reach it as profile messages would:
    before an entity's first event, and (item tags) as they are applied over time; a tag
    is only known to the model from the first chunk of events after it was applied."""

    def __init__(
        self,
        name: str,
        params: ModelParams,
        user_features: Mapping[str, Sequence[str]] | None = None,
        item_features: Mapping[str, Sequence[str]] | None = None,
        timed_item_features: Sequence[tuple[float, str, str]] = (),
        predicts_ratings: bool = True,
    ) -> None:
        self.name = name
        self.model = HybridModel(params)
        self._user_features = user_features or {}
        self._item_features = item_features or {}
        self._timed = timed_item_features
        self._next_timed = 0
        self._tags: dict[str, Counter[str]] = defaultdict(Counter)
        self._predicts_ratings = predicts_ratings

    def learn(self, events: InteractionBatch) -> npt.NDArray[np.float64]:
        model = self.model
        if len(events):
            self._apply_tags_before(float(events.timestamps[0]))
        for user in dict.fromkeys(events.user_ids):
            if model.users.row_of(user) is None and user in self._user_features:
                model.set_user_features(user, self._user_features[user])
        for item in dict.fromkeys(events.item_ids):
            if model.items.row_of(item) is None and self._features_of(item):
                model.set_item_features(item, self._features_of(item))
        predictions = model.apply(events).predictions
        return predictions if self._predicts_ratings else np.full(len(events), np.nan)

    def recommend(self, user_id: str, k: int) -> list[str]:
        if self.model.users.row_of(user_id) is None and user_id in self._user_features:
            self.model.set_user_features(user_id, self._user_features[user_id])
        (listed,) = self.model.recommend_ids([user_id], k)
        return [item for item, _ in listed]

    def _features_of(self, item: str) -> list[str]:
        tags = (
            [tag for tag, _ in self._tags[item].most_common(MAX_TAGS)] if item in self._tags else []
        )
        return [*self._item_features.get(item, ()), *tags]

    def _apply_tags_before(self, ts: float) -> None:
        """Tags applied before ``ts`` become item features (replacing the item's set)."""
        changed: set[str] = set()
        while self._next_timed < len(self._timed) and self._timed[self._next_timed][0] < ts:
            _, item, tag = self._timed[self._next_timed]
            self._tags[item][tag] += 1
            changed.add(item)
            self._next_timed += 1
        for item in changed:
            if self.model.items.row_of(item) is not None:
                self.model.set_item_features(item, self._features_of(item))


def stream_rec_variants(
    params: ModelParams,
    user_features: Mapping[str, Sequence[str]],
    item_features: Mapping[str, Sequence[str]],
    timed_item_features: Sequence[tuple[float, str, str]] = (),
) -> list[StreamRecModel]:
    """The full model, each part alone, and the full model without features (and
    without user features alone)."""
    return [
        StreamRecModel("stream_rec", params, user_features, item_features, timed_item_features),
        StreamRecModel(
            "stream_rec_mf_only",
            replace(params, session_weight=0.0),
            user_features,
            item_features,
            timed_item_features,
        ),
        StreamRecModel("stream_rec_session_only", _session_only(params), predicts_ratings=False),
        StreamRecModel("stream_rec_no_features", params),
        # Item metadata but no user profiles: what demographics add for cold users.
        StreamRecModel(
            "stream_rec_no_demographics", params, {}, item_features, timed_item_features
        ),
    ]


def _session_only(params: ModelParams) -> ModelParams:
    """Factor scores carry no information: zero vectors, no steps; the session decides."""
    return replace(
        params,
        init_std=0.0,
        learning_rate=1e-12,
        ranking_learning_rate=1e-12,
        bias_learning_rate=0.0,
        ranking_bias_learning_rate=0.0,
        explicit_weight=0.0,
        impression_weight=0.0,
    )


class Popularity:
    """Most positives so far, excluding the user's seen items."""

    name = "popularity"

    def __init__(self, positive_rating: float = 4.0) -> None:
        self._positive_rating = positive_rating
        self._index: dict[str, int] = {}
        self._ids: list[str] = []
        self._counts = np.zeros(1024, np.float64)
        self._seen: dict[str, set[int]] = defaultdict(set)

    def learn(self, events: InteractionBatch) -> npt.NDArray[np.float64]:
        kinds = events.kinds.tolist()
        values = events.values.tolist()
        for e, (user, item) in enumerate(zip(events.user_ids, events.item_ids, strict=True)):
            row = self._row(item)
            kind = kinds[e]
            if (kind == EventKind.RATING and values[e] >= self._positive_rating) or kind in (
                EventKind.CLICK,
                EventKind.WATCH,
            ):
                self._counts[row] += 1.0
            if kind in _CONSUMED:
                self._seen[user].add(row)
        return np.full(len(events), np.nan)

    def recommend(self, user_id: str, k: int) -> list[str]:
        counts = self._counts[: len(self._ids)].copy()
        seen = list(self._seen.get(user_id, ()))
        counts[seen] = -np.inf
        top = np.argsort(-counts, kind="stable")[:k]
        return [self._ids[i] for i in top.tolist() if np.isfinite(counts[i])]

    def _row(self, item: str) -> int:
        row = self._index.get(item)
        if row is None:
            row = len(self._ids)
            self._index[item] = row
            self._ids.append(item)
            if row >= self._counts.shape[0]:
                self._counts = np.concatenate([self._counts, np.zeros_like(self._counts)])
        return row


class RiverBiasedMF:
    """river's ``reco.BiasedMF`` (n_factors=10, SGD 0.025 bias / 0.05 latent, Normal(0, 0.1)
    init, no L2), learning with ``learn_one`` on each rating. Its lists come from its own
    weights, mirrored into arrays after each step so that ranking all items is one product.
    """

    name = "river_biasedmf"

    def __init__(self, n_factors: int = 10, seed: int = 42) -> None:
        self.model = reco.BiasedMF(
            n_factors=n_factors,
            bias_optimizer=optim.SGD(0.025),
            latent_optimizer=optim.SGD(0.05),
            latent_initializer=optim.initializers.Normal(mu=0.0, sigma=0.1, seed=seed),
            l2_bias=0.0,
            l2_latent=0.0,
        )
        self._k = n_factors
        self._index: dict[str, int] = {}
        self._ids: list[str] = []
        self._items = np.zeros((1024, n_factors + 1))
        self._seen: dict[str, set[int]] = defaultdict(set)

    def learn(self, events: InteractionBatch) -> npt.NDArray[np.float64]:
        model: Any = self.model  # river is untyped
        out = np.full(len(events), np.nan)
        kinds = events.kinds.tolist()
        values = events.values.tolist()
        for e, (user, item) in enumerate(zip(events.user_ids, events.item_ids, strict=True)):
            row = self._row(item)
            if kinds[e] in _CONSUMED:
                self._seen[user].add(row)
            if kinds[e] != EventKind.RATING:
                continue
            out[e] = model.predict_one(user, item)
            model.learn_one(user, item, values[e])
            self._items[row, : self._k] = model.i_latents[item]
            self._items[row, self._k] = model.i_biases[item]
        return out

    def recommend(self, user_id: str, k: int) -> list[str]:
        n = len(self._ids)
        if user_id in self.model.u_latents:
            latent = np.asarray(self.model.u_latents[user_id])
        else:
            latent = np.zeros(self._k)
        scores = self._items[:n, : self._k] @ latent + self._items[:n, self._k]
        scores[list(self._seen.get(user_id, ()))] = -np.inf
        top = np.argsort(-scores, kind="stable")[:k]
        return [self._ids[i] for i in top.tolist() if np.isfinite(scores[i])]

    def _row(self, item: str) -> int:
        row = self._index.get(item)
        if row is None:
            row = len(self._ids)
            self._index[item] = row
            self._ids.append(item)
            if row >= self._items.shape[0]:
                self._items = np.concatenate([self._items, np.zeros_like(self._items)])
        return row
