"""StreamingMF: matrix factorisation that learns one SGD step per event, in event order."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain

import numpy as np
import numpy.typing as npt

from stream_rec.model.batch import CONSUMED_KINDS, InteractionBatch
from stream_rec.model.kernels import (
    LOSS_POSITIVES,
    LOSS_RANKING,
    LOSS_RATINGS,
    LOSS_SIZE,
    LOSS_SQUARED_ERROR,
    apply_events,
    hyper_vector,
)
from stream_rec.model.params import ModelParams
from stream_rec.model.tables import EntityRows, EntityTable
from stream_rec.model.topk import top_k

_CONSUMED_CODES = np.array(sorted(int(k) for k in CONSUMED_KINDS), np.int8)


@dataclass(frozen=True)
class AppliedBatch:
    """What one :meth:`StreamingMF.apply` changed.

    ``user_rows``/``item_rows``: the distinct rows changed (items: the events' items and
    the sampled negatives that were stepped), in order of first touch;
    ``new_seen``: user row -> item rows that user consumed for the first time.
    """

    user_rows: npt.NDArray[np.int64]
    item_rows: npt.NDArray[np.int64]
    new_seen: dict[int, list[int]]
    squared_error: float
    ratings: int
    ranking_loss: float
    positives: int


class StreamingMF:
    """A biased MF model over users and items, updated by per-event SGD.

    Users' rows are [p_u (k), b_u]; items' rows are [q_i (k), b_i, c_i] (see
    :mod:`stream_rec.model.kernels`). Ratings train mu + b_u + b_i + p_u.q_i; positives
    train the ranking score p_u.q_i + c_i, which orders the recommended lists.
    Not thread-safe: one caller applies batches and reads lists.
    """

    def __init__(self, params: ModelParams) -> None:
        self.params = params
        k = params.factors
        self.users = EntityTable(k, k + 1, params.init_std, params.seed)
        self.items = EntityTable(k, k + 2, params.init_std, params.seed ^ 0x5EED)
        self._seen: list[set[int]] = []
        self._rating_stats = np.zeros(2, np.float64)
        self._hp = hyper_vector(params)

    @property
    def k(self) -> int:
        return self.params.factors

    @property
    def rating_stats(self) -> tuple[float, int]:
        """(sum, count) of all ratings applied; mu is their mean."""
        return float(self._rating_stats[0]), int(self._rating_stats[1])

    @property
    def global_mean(self) -> float:
        total, count = self.rating_stats
        return total / count if count else 0.0

    def apply(self, batch: InteractionBatch) -> AppliedBatch:
        """One SGD step per event of ``batch``, in order; new ids get rows first."""
        users = self.users.rows_for(batch.user_ids)
        n_items_before = len(self.items)
        items = self.items.rows_for(batch.item_ids)
        self._grow_seen()
        losses = np.zeros(LOSS_SIZE, np.float64)
        negatives = np.empty(len(batch), np.int64)
        apply_events(
            self.users.rows,
            self.items.rows,
            self.users.counts,
            self.items.counts,
            self.users.keys,
            users,
            items,
            batch.kinds,
            batch.values,
            batch.durations,
            n_items_before,
            self._rating_stats,
            self._hp,
            self.params.seed,
            losses,
            negatives,
        )
        consumed = np.isin(batch.kinds, _CONSUMED_CODES)
        new_seen: dict[int, list[int]] = {}
        for user, item in zip(users[consumed].tolist(), items[consumed].tolist(), strict=True):
            seen = self._seen[user]
            if item not in seen:
                seen.add(item)
                new_seen.setdefault(user, []).append(item)
        return AppliedBatch(
            np.fromiter(dict.fromkeys(users.tolist()), np.int64),
            # The events' items, then the negatives stepped: every item row that changed.
            np.fromiter(
                dict.fromkeys([*items.tolist(), *negatives[negatives >= 0].tolist()]), np.int64
            ),
            new_seen,
            float(losses[LOSS_SQUARED_ERROR]),
            int(losses[LOSS_RATINGS]),
            float(losses[LOSS_RANKING]),
            int(losses[LOSS_POSITIVES]),
        )

    def recommend(
        self, user_rows: npt.NDArray[np.int64], k: int | None = None
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """Top-k item rows and scores for each user row, excluding items they consumed.

        Shapes (m, k); where fewer than k unseen items exist the tail is -1 / -inf.
        """
        k = self.params.top_k if k is None else k
        items = self.items.view()
        indptr, indices = self._exclusions(user_rows)
        return top_k(
            self.users.rows[user_rows, : self.k],
            items[:, : self.k],
            items[:, self.k + 1],
            indptr,
            indices,
            k,
        )

    def recommend_ids(
        self, user_ids: Sequence[str], k: int | None = None
    ) -> list[list[tuple[str, float]]]:
        """Lists of (item_id, score) for known users; an unknown user gets an empty list."""
        known = [
            (pos, row)
            for pos, u in enumerate(user_ids)
            if (row := self.users.row_of(u)) is not None
        ]
        out: list[list[tuple[str, float]]] = [[] for _ in user_ids]
        if not known:
            return out
        rows, scores = self.recommend(np.array([row for _, row in known], np.int64), k)
        item_ids = self.items.ids
        for (pos, _), row_items, row_scores in zip(
            known, rows.tolist(), scores.tolist(), strict=True
        ):
            out[pos] = [
                (item_ids[i], s) for i, s in zip(row_items, row_scores, strict=True) if i >= 0
            ]
        return out

    def predict_rating(self, user_id: str, item_id: str) -> float:
        """mu + b_u + b_i + p_u.q_i, with 0 for the parts of unknown ids."""
        prediction = self.global_mean
        u = self.users.row_of(user_id)
        i = self.items.row_of(item_id)
        k = self.k
        if u is not None:
            prediction += float(self.users.rows[u, k])
        if i is not None:
            prediction += float(self.items.rows[i, k])
        if u is not None and i is not None:
            prediction += float(self.users.rows[u, :k] @ self.items.rows[i, :k])
        return prediction

    def seen_items(self, user_id: str) -> list[str]:
        """Items the user consumed (clicked, watched or rated), in no particular order."""
        row = self.users.row_of(user_id)
        if row is None or row >= len(self._seen):
            return []
        ids = self.items.ids
        return [ids[i] for i in self._seen[row]]

    def export(
        self, user_rows: npt.NDArray[np.int64], item_rows: npt.NDArray[np.int64]
    ) -> tuple[EntityRows, EntityRows]:
        """Copies of the given users' and items' rows and counters, for persisting."""
        return self.users.export(user_rows), self.items.export(item_rows)

    def restore(
        self,
        users: EntityRows,
        items: EntityRows,
        seen: Mapping[str, Iterable[str]],
        rating_sum: float,
        rating_count: int,
    ) -> None:
        """Load persisted state (as :meth:`export` and :meth:`apply` produced it)."""
        self.users.restore(users)
        self.items.restore(items)
        self._grow_seen()
        for user_id, item_ids in seen.items():
            user = self.users.rows_for([user_id])[0]
            self._grow_seen()
            self._seen[user].update(self.items.rows_for(item_ids).tolist())
        self._grow_seen()
        self._rating_stats[:] = (rating_sum, rating_count)

    def warmup(self) -> None:
        """Compile (or load from cache) every kernel, on a throwaway model."""
        scratch = StreamingMF(self.params)
        batch = InteractionBatch.from_columns(
            ["u0", "u0", "u1", "u1"], ["i0", "i1", "i1", "i0"], [1, 2, 3, 0], [1.0, 300.0, 4.5, 0.0]
        )
        applied = scratch.apply(batch)
        scratch.recommend(applied.user_rows)

    def _grow_seen(self) -> None:
        missing = len(self.users) - len(self._seen)
        if missing > 0:
            self._seen.extend(set() for _ in range(missing))

    def _exclusions(
        self, user_rows: npt.NDArray[np.int64]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """The seen items of ``user_rows`` as CSR (indptr, indices)."""
        seen = [self._seen[r] for r in user_rows.tolist()]
        indptr = np.zeros(len(seen) + 1, np.int64)
        np.cumsum([len(s) for s in seen], out=indptr[1:])
        indices = np.fromiter(chain.from_iterable(seen), np.int64, int(indptr[-1]))
        return indptr, indices
