"""HybridModel: factors with feature embeddings plus a session signal, learning per event.

- Factors: users and items have vectors and biases; a user's or item's features (age
  bucket, country, genre, tag ...) have vectors too, averaged into the effective vector,
  so an entity with features and no events already has a useful one (cold start).
- Objectives: ratings train biased MF; clicks, watches (by watched fraction) and high
  ratings train a confidence-weighted BPR ranking; impressions are weak negatives.
- Session: the user's latest positives query an item co-visitation memory; lists blend
  it with the factor scores (:mod:`stream_rec.model.topk`).
- Cold users (no row at all) get the most popular items of the recent window.
Not thread-safe: one caller applies batches and reads lists.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from itertools import chain

import numpy as np
import numpy.typing as npt

from stream_rec.model.batch import CONSUMED_KINDS, EventKind, InteractionBatch
from stream_rec.model.context import ContextVocabulary
from stream_rec.model.hyper import (
    LOSS_POSITIVES,
    LOSS_RANKING,
    LOSS_RATINGS,
    LOSS_SIZE,
    LOSS_SQUARED_ERROR,
    hyper_vector,
)
from stream_rec.model.kernels import apply_events, apply_ratings
from stream_rec.model.params import ModelParams
from stream_rec.model.steps import effective_rows
from stream_rec.model.tables import EntityTable, ModelDelta, SideColumn, TableRows, grown
from stream_rec.model.topk import SessionQuery, blended_scores, top_k

_CONSUMED_CODES = np.array(sorted(int(k) for k in CONSUMED_KINDS), np.int8)
TABLES = ("users", "items", "user_features", "item_features")
SHARED_TABLES = ("items", "user_features", "item_features")
"""Tables that every worker updates (a user has one writer: its events' partition's)."""


def _weighted_list(ids: str, weights: str, width: int) -> tuple[SideColumn, SideColumn]:
    """The two side columns of a bounded weighted list of item rows (co-visitation
    neighbours, a segment's items): ids (-1 empty) and weights, merged as one list."""
    return (
        SideColumn(ids, np.int32, width, -1, merge="neighbours", pair=weights),
        SideColumn(weights, np.float32, width, 0.0, merge="weights"),
    )


@dataclass(frozen=True)
class AppliedBatch:
    """What one :meth:`HybridModel.apply` changed and measured.

    ``user_rows``: the batch's users in order of first touch (each gets a new list);
    ``predictions``: each event's rating prediction made before its step (NaN if none);
    ``new_seen``: user row -> item rows consumed for the first time; the losses are sums
    over the batch's rating steps and BPR steps (``ranking_steps`` of them).
    """

    user_rows: npt.NDArray[np.int64]
    predictions: npt.NDArray[np.float64]
    new_seen: dict[int, list[int]]
    squared_error: float
    ratings: int
    ranking_loss: float
    ranking_steps: int


class HybridModel:
    """The stream-rec model. See the module docstring; rows follow
    :mod:`stream_rec.model.kernels`."""

    def __init__(self, params: ModelParams) -> None:
        self.params = params
        k = params.factors
        m = params.max_features
        feats = SideColumn("features", np.int32, m, -1)
        # A user's slots past max_features hold an event's context values during its steps.
        user_feats = SideColumn("features", np.int32, m + params.context_slots, -1)
        self.users = EntityTable(
            k,
            k + 2,
            params.init_std,
            params.seed,
            (
                SideColumn("recent", np.int32, params.session_length, -1),
                user_feats,
                # Profile updates so far: with the event count, the version of the lists.
                SideColumn("profile_updates", np.int32, 1, 0),
            ),
        )
        self.items = EntityTable(
            k,
            k + 3,
            params.init_std,
            params.seed ^ 0x5EED,
            (
                feats,
                *_weighted_list("neighbours", "neighbour_weights", params.neighbours),
                # From the item's metadata: watches of it are weighed by this length.
                SideColumn("duration", np.float32, 1, 0.0),
            ),
            shared=True,
        )
        self.user_features = EntityTable(
            k,
            k + 1,
            params.init_std,
            params.seed ^ 0xF00D,
            (
                # The segment of users with this feature: its recently taken items.
                *_weighted_list("segment_items", "segment_weights", params.segment_items),
            ),
            shared=True,
        )
        self.item_features = EntityTable(
            k, k + 2, params.init_std, params.seed ^ 0xFEED, shared=True
        )
        self._seen: list[dict[int, None]] = []  # ordered sets: the oldest is forgotten first
        self._rating_stats = np.array([0.0, 0.0, 1.0])  # sum, count, rating scale
        self._base_rating_stats = self._rating_stats.copy()  # as last synced with the store
        self._window = np.full(params.popularity_window, -1, np.int32)
        self._window_position = np.zeros(1, np.int64)
        self._window_counts = np.zeros(0, np.int32)
        self._dirty_users = np.zeros(0, np.uint8)
        self._dirty_items = np.zeros(0, np.uint8)
        self._hp = hyper_vector(params)
        self.user_features_set = 0
        """How many users have ever been given features (0: no user has any)."""
        self.item_features_set = 0
        """How many items have ever been given features."""
        self.contexts = ContextVocabulary(params, self.user_features)
        """Context values and their rows among the user features."""

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

    @property
    def layout(self) -> str:
        """The shape of the persisted state; stored state must match it."""
        tables = ";".join(f"{n}[{getattr(self, n).layout}]" for n in TABLES)
        return f"k={self.k};window={self.params.popularity_window};{tables}"

    def apply(self, batch: InteractionBatch) -> AppliedBatch:
        """One step per event of ``batch``, in order; new ids get rows first."""
        users = self.users.rows_for(batch.user_ids)
        n_items_before = len(self.items)
        items = self.items.rows_for(batch.item_ids)
        self._grow()
        contexts = self.contexts.rows_for(batch)
        losses, predictions = self.step_rows(users, items, batch, n_items_before, contexts)
        consumed = np.isin(batch.kinds, _CONSUMED_CODES)
        new_seen: dict[int, list[int]] = {}
        cap = self.params.max_seen_items
        for user, item in zip(users[consumed].tolist(), items[consumed].tolist(), strict=True):
            seen = self._seen[user]
            if item not in seen:
                seen[item] = None
                if len(seen) > cap:
                    del seen[next(iter(seen))]
                new_seen.setdefault(user, []).append(item)
        return AppliedBatch(
            np.fromiter(dict.fromkeys(users.tolist()), np.int64),
            predictions,
            new_seen,
            float(losses[LOSS_SQUARED_ERROR]),
            int(losses[LOSS_RATINGS]),
            float(losses[LOSS_RANKING]),
            int(losses[LOSS_POSITIVES]),
        )

    def step_rows(
        self,
        users: npt.NDArray[np.int64],
        items: npt.NDArray[np.int64],
        batch: InteractionBatch,
        n_items_before: int,
        contexts: npt.NDArray[np.int32] | None = None,
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """The compiled update alone, on events whose ids are already rows (as :meth:`apply`
        maps them) and with their context rows (n, context_slots) if any; returns (losses,
        predictions). Seen items are not recorded: call :meth:`apply` unless you are timing
        the kernel."""
        losses = np.zeros(LOSS_SIZE, np.float64)
        predictions = np.empty(len(batch), np.float64)
        us, it = self.users, self.items
        if contexts is None:
            contexts = np.full((len(batch), 0), -1, np.int32)
        if contexts.size == 0 and self._explicit_only(users, items, batch):
            apply_ratings(
                us.rows,
                it.rows,
                us.counts,
                it.counts,
                users,
                items,
                batch.values,
                self._rating_stats,
                self._hp,
                losses,
                predictions,
                self._dirty_users,
                self._dirty_items,
            )
            return losses, predictions
        apply_events(
            us.rows,
            it.rows,
            self.user_features.rows,
            self.item_features.rows,
            us.counts,
            it.counts,
            us.keys,
            us.side["features"],
            it.side["features"],
            self.user_features.counts,
            self.user_features.side["segment_items"],
            self.user_features.side["segment_weights"],
            us.side["recent"],
            it.side["neighbours"],
            it.side["neighbour_weights"],
            it.side["duration"],
            self._window,
            self._window_position,
            self._window_counts,
            users,
            items,
            batch.kinds,
            batch.values,
            batch.durations,
            contexts,
            n_items_before,
            self._rating_stats,
            self._hp,
            self.params.seed,
            losses,
            predictions,
            self._dirty_users,
            self._dirty_items,
        )
        return losses, predictions

    def set_user_features(self, user_id: str, tokens: Sequence[str]) -> int:
        """Replace a user's feature set (creating the user if new); returns its row."""
        row = self._set_features(self.users, self.user_features, user_id, tokens)
        self.user_features_set += 1
        self.users.side["profile_updates"][row, 0] += 1
        self._dirty_users[row] = 1
        return row

    def set_item_features(
        self, item_id: str, tokens: Sequence[str], duration_seconds: float | None = None
    ) -> int:
        """Replace an item's feature set (creating the item if new) and, if given, its
        duration (which weighs watches that carry none); returns its row."""
        row = self._set_features(self.items, self.item_features, item_id, tokens)
        if duration_seconds is not None:
            self.items.side["duration"][row, 0] = duration_seconds
        self.item_features_set += 1
        self._dirty_items[row] = 1
        return row

    def recommend(
        self,
        user_rows: npt.NDArray[np.int64],
        k: int | None = None,
        contexts: npt.NDArray[np.int32] | None = None,
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """Top-k item rows and scores for each user row, excluding items they consumed;
        ``contexts`` (m, slots) from :meth:`ContextVocabulary.lookup` scores each user in
        a context.

        Shapes (m, k); where fewer than k unseen items exist the tail is -1 / -inf.
        """
        k = self.params.top_k if k is None else k
        users, vectors, bias, session = self._scoring(user_rows, contexts)
        indptr, indices = self._exclusions(user_rows)
        rows, scores = top_k(users, vectors, bias, indptr, indices, k, session)
        for r, user in enumerate(user_rows.tolist()):
            if self.users.counts[user] == 0 and not self._features_learned(user):
                rows[r], scores[r] = self._segment_list(user, k, rows[r])
        return rows, scores

    def _features_learned(self, user: int) -> bool:
        """Whether one of the user's features has been behind ``min_feature_events``
        positives (then its embedding, not its segment's popularity, scores a cold user)."""
        feats = self.users.side["features"][user, : self.params.max_features]
        feats = feats[feats >= 0]
        counts = self.user_features.counts[feats]
        return bool(feats.size) and int(counts.max()) >= self.params.min_feature_events

    def _segment_list(
        self, user: int, k: int, by_vectors: npt.NDArray[np.int64]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """Top-k by the recent popularity of the user's segments (its features), summed
        over them, or by global recent popularity where the segments have none; the rest
        of the list (items no one took yet, score 0) in the order of ``by_vectors``."""
        n = len(self.items)
        scores = np.zeros(n, np.float32)
        feats = self.users.side["features"][user, : self.params.max_features]
        for f in feats[feats >= 0].tolist():
            items = self.user_features.side["segment_items"][f]
            filled = items >= 0
            np.add.at(scores, items[filled], self.user_features.side["segment_weights"][f][filled])
        if not scores.any():
            scores = self._window_counts[:n].astype(np.float32)
        scores[list(self._seen[user])] = 0.0
        order = np.argsort(-scores, kind="stable")[:k]
        order = order[scores[order] > 0]
        taken = set(order.tolist())
        rest = [i for i in by_vectors.tolist() if i >= 0 and i not in taken][: k - order.size]
        rows = np.full(k, -1, np.int64)
        out = np.full(k, -np.inf, np.float32)
        rows[: order.size] = order
        out[: order.size] = scores[order]
        rows[order.size : order.size + len(rest)] = rest
        out[order.size : order.size + len(rest)] = 0.0
        return rows, out

    def _explicit_only(
        self, users: npt.NDArray[np.int64], items: npt.NDArray[np.int64], batch: InteractionBatch
    ) -> bool:
        """Whether every event is a rating that only takes the explicit step: no positive,
        nothing for the session, no features - then :func:`apply_ratings` gives the same
        result as :func:`apply_events`, faster."""
        p = self.params
        if len(batch) == 0 or not bool(np.all(batch.kinds == EventKind.RATING)):
            return False
        top = float(batch.values.max())
        positive = (
            p.rating_weight > 0 or p.rating_weight_per_star > 0
        ) and top >= p.positive_rating
        if positive or top >= p.session_min_rating:
            return False
        if p.max_features == 0 or (self.user_features_set == 0 and self.item_features_set == 0):
            return True
        return bool(
            np.all(self.users.side["features"][users, 0] < 0)
            and np.all(self.items.side["features"][items, 0] < 0)
        )

    def score_items(self, user_id: str, item_ids: Sequence[str]) -> npt.NDArray[np.float32]:
        """The ranking scores of ``item_ids`` for one user (what orders its list; seen items
        are not masked). Unknown items score -inf; an unknown user gets recent popularity."""
        rows = [self.items.row_of(i) for i in item_ids]
        user = self.users.row_of(user_id)
        if user is None:
            full = self._window_counts[: len(self.items)].astype(np.float32)
        else:
            users, vectors, bias, session = self._scoring(np.array([user], np.int64))
            full = blended_scores(users, vectors, bias, session)[0]
        return np.array([full[r] if r is not None else -np.inf for r in rows], np.float32)

    def _scoring(
        self, user_rows: npt.NDArray[np.int64], contexts: npt.NDArray[np.int32] | None = None
    ) -> tuple[
        npt.NDArray[np.float32],
        npt.NDArray[np.float32],
        npt.NDArray[np.float32],
        SessionQuery | None,
    ]:
        """Effective user and item vectors, item ranking biases, and the session query."""
        n = len(self.items)
        vectors, bias = self._effective(self.items, self.item_features, np.arange(n), 1, self.k)
        users = self._user_vectors(user_rows, contexts)
        session = None
        if self.params.session_length and self.params.session_weight > 0:
            it = self.items
            damping = (1.0 + it.counts[:n].astype(np.float32)) ** -self.params.popularity_exponent
            session = SessionQuery(
                self.users.side["recent"][user_rows],
                it.side["neighbours"][:n],
                it.side["neighbour_weights"][:n],
                damping.astype(np.float32),
                self.params.session_decay,
                self.params.session_weight,
            )
        return users, vectors, bias, session

    def _user_vectors(
        self, user_rows: npt.NDArray[np.int64], contexts: npt.NDArray[np.int32] | None
    ) -> npt.NDArray[np.float32]:
        """Effective user vectors (m, k); with ``contexts``, each user's context values
        join its features, as they did in the steps of its events."""
        if contexts is None or not (contexts >= 0).any():
            users, _ = self._effective(self.users, self.user_features, user_rows, -1, -1)
            return users
        feats = self.users.side["features"][user_rows, : self.params.max_features]
        merged = np.full((len(user_rows), feats.shape[1] + contexts.shape[1]), -1, np.int32)
        for r in range(len(user_rows)):
            tokens = [int(f) for f in feats[r] if f >= 0] + [int(c) for c in contexts[r] if c >= 0]
            merged[r, : len(tokens)] = tokens
        out = np.empty((len(user_rows), self.k), np.float32)
        unused = np.empty(len(user_rows), np.float32)
        own = self.users.rows[user_rows]
        effective_rows(
            own,
            np.arange(len(user_rows), dtype=np.int64),
            merged,
            self.user_features.rows,
            -1,
            -1,
            out,
            unused,
        )
        return out

    def popular(self, k: int | None = None, exclude: Iterable[int] = ()) -> list[int]:
        """Item rows most often taken among the latest positives (the popularity window)."""
        k = self.params.top_k if k is None else k
        counts = self._window_counts[: len(self.items)].astype(np.float64)
        counts[list(exclude)] = -1.0
        order = np.argsort(-counts, kind="stable")[:k]
        return [int(i) for i in order if counts[i] > 0]

    def recommend_ids(
        self, user_ids: Sequence[str], k: int | None = None
    ) -> list[list[tuple[str, float]]]:
        """Lists of (item_id, score); a user the model has never seen gets popular items."""
        known = [
            (pos, row)
            for pos, u in enumerate(user_ids)
            if (row := self.users.row_of(u)) is not None
        ]
        item_ids = self.items.ids
        popular = [(item_ids[i], float(self._window_counts[i])) for i in self.popular(k)]
        out: list[list[tuple[str, float]]] = [list(popular) for _ in user_ids]
        if known:
            rows, scores = self.recommend(np.array([row for _, row in known], np.int64), k)
            for (pos, _), row_items, row_scores in zip(
                known, rows.tolist(), scores.tolist(), strict=True
            ):
                out[pos] = [
                    (item_ids[i], s) for i, s in zip(row_items, row_scores, strict=True) if i >= 0
                ]
        return out

    def predict_rating(self, user_id: str, item_id: str) -> float:
        """mu + b_u + b_i + s u.i (effective vectors), 0 for the parts of unknown ids."""
        prediction = self.global_mean
        u = self.users.row_of(user_id)
        i = self.items.row_of(item_id)
        k = self.k
        if u is not None:
            prediction += float(self.users.rows[u, k])
        if i is not None:
            prediction += float(self.items.rows[i, k])
        if u is not None and i is not None:
            user, _ = self._effective(self.users, self.user_features, np.array([u]), -1, -1)
            item, _ = self._effective(self.items, self.item_features, np.array([i]), -1, -1)
            prediction += float(self._rating_stats[2]) * float(user[0] @ item[0])
        return prediction

    def list_diversity(self, item_rows: Sequence[int]) -> float | None:
        """1 - mean pairwise similarity of a list's items: Jaccard of their feature sets
        where they have features, else cosine of their vectors (None for < 2 items).

        >>> m = HybridModel(ModelParams(factors=2))
        >>> rows = [m.set_item_features(i, f) for i, f in (("a", ["g=1"]), ("b", ["g=1", "g=2"]))]
        >>> m.list_diversity(rows)
        0.5
        """
        rows = [r for r in item_rows if r >= 0]
        if len(rows) < 2:
            return None
        feats = self.items.side["features"][rows]
        if (feats[:, :1] >= 0).all():
            sets = [frozenset(int(f) for f in row if f >= 0) for row in feats]
            pairs = [len(a & b) / len(a | b) for n, a in enumerate(sets) for b in sets[n + 1 :]]
            return 1.0 - float(np.mean(pairs))
        vectors = self.items.rows[rows, : self.k].astype(np.float64)
        norms = np.linalg.norm(vectors, axis=1)
        unit = vectors / np.where(norms > 0, norms, 1.0)[:, None]
        # The pairs' cosines sum to (|sum of units|^2 - sum of |unit|^2) / 2: no n x n
        # matrix (a zero vector's unit is zero, its cosines 0, as in the matrix).
        n = len(rows)
        total = unit.sum(axis=0)
        pairs_sum = (float(total @ total) - float(np.einsum("ij,ij->", unit, unit))) / 2.0
        return 1.0 - pairs_sum / (n * (n - 1) / 2)

    def version(self, user_row: int) -> int:
        """The version of the user's next list: its events applied plus its profile
        updates, so it grows with every change behind a list."""
        return int(self.versions(np.array([user_row], np.int64))[0])

    def versions(self, user_rows: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """:meth:`version` of each of ``user_rows``."""
        us = self.users
        out: npt.NDArray[np.int64] = us.counts[user_rows].astype(np.int64)
        out += us.side["profile_updates"][user_rows, 0]
        return out

    def seen_items(self, user_id: str) -> list[str]:
        """Items the user consumed (clicked, watched or rated), in no particular order."""
        row = self.users.row_of(user_id)
        if row is None or row >= len(self._seen):
            return []
        ids = self.items.ids
        return [ids[i] for i in self._seen[row]]

    def take_changes(self) -> ModelDelta:
        """Rows changed since the last call (by events or features), as records."""
        users = np.flatnonzero(self._dirty_users[: len(self.users)])
        items = np.flatnonzero(self._dirty_items[: len(self.items)])
        self._dirty_users[:] = 0
        self._dirty_items[:] = 0
        return self._delta(users, items, self.contexts.take_changed())

    def snapshot(self) -> ModelDelta:
        """Every row, as records (what a full restore needs)."""
        users, items = np.arange(len(self.users)), np.arange(len(self.items))
        return self._delta(users, items, self.contexts.all_rows())

    def use_registry(self, register: Callable[[str, Sequence[str], int], Sequence[str]]) -> None:
        """Number new ids of every table by ``register(table, new_ids, known)`` (see
        :data:`stream_rec.model.tables.Allocator`): several writers then agree on rows."""
        for name in TABLES:
            getattr(self, name).allocator = partial(register, name)

    def merge_changes(
        self,
        delta: ModelDelta,
        stored: Mapping[str, Sequence[bytes | None]],
        stored_globals: Mapping[str, bytes],
    ) -> ModelDelta:
        """``delta`` (from :meth:`take_changes`) rebased on what the store holds now:
        the shared tables' rows and the rating sums get this model's changes since its
        last sync added to ``stored`` (records aligned with ``delta``'s ids, None where
        nothing is stored); users, which have one writer, are written as they are."""
        tables = dict(delta.tables)
        for name in SHARED_TABLES:
            rows = delta.tables.get(name)
            if rows is None or not rows.ids:
                continue
            table: EntityTable = getattr(self, name)
            index = np.array([table.row_of(i) for i in rows.ids], np.int64)
            tables[name] = table.merge(stored[name], index)
        globals_ = dict(delta.globals)
        if "rating_stats" in stored_globals:
            now = np.frombuffer(stored_globals["rating_stats"], "<f8").copy()
            now[:2] += self._rating_stats[:2] - self._base_rating_stats[:2]
            now[2] = self._rating_stats[2]
            globals_["rating_stats"] = now.astype("<f8").tobytes()
        return ModelDelta(tables, globals_)

    def synced(self, written: ModelDelta) -> None:
        """``written`` is in the store now: its shared rows (and rating sums) become this
        model's values and the base of its next changes."""
        for name in SHARED_TABLES:
            rows = written.tables.get(name)
            if rows is not None:
                getattr(self, name).synced(rows)
        if "rating_stats" in written.globals:
            self._rating_stats[:] = np.frombuffer(written.globals["rating_stats"], "<f8")
            self._base_rating_stats[:] = self._rating_stats

    def refresh(self, shared: ModelDelta, registry: Mapping[str, Sequence[str]]) -> None:
        """Take the store's current shared rows (what other writers made of them), when
        this model has no change of its own since its last sync. ``registry``: each table's
        ids in row order, from which the tables learn the rows other writers numbered."""
        for name in TABLES:
            table: EntityTable = getattr(self, name)
            ids = registry.get(name, ())
            table.extend(ids[len(table) :])
        self._grow()
        self.synced(shared)
        self.contexts.restore()

    def restore(
        self,
        delta: ModelDelta,
        seen: Mapping[str, Iterable[str]],
        registry: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        """Load a :meth:`snapshot` into this empty model; row numbers are kept, and with
        ``registry`` (each table's ids in row order) rows never committed start fresh."""
        for name in TABLES:
            getattr(self, name).restore(
                delta.tables.get(name, TableRows([], [], [])),
                None if registry is None else registry.get(name, []),
            )
        self._grow()
        for table, attribute in (
            (self.users, "user_features_set"),
            (self.items, "item_features_set"),
        ):
            feats = table.side["features"][: len(table)]
            setattr(self, attribute, int((feats[:, 0] >= 0).sum()) if feats.shape[1] else 0)
        self.contexts.restore()
        if "rating_stats" in delta.globals:
            self._rating_stats[:] = np.frombuffer(delta.globals["rating_stats"], "<f8")
            self._base_rating_stats[:] = self._rating_stats
        if "window" in delta.globals:
            window = np.frombuffer(delta.globals["window"], "<i4")
            if window.shape != self._window.shape:
                raise ValueError("the stored popularity window has another size")
            self._window[:] = window
            self._window_position[0] = int(
                np.frombuffer(delta.globals["window_position"], "<i8")[0]
            )
            self._window_counts[:] = 0
            np.add.at(self._window_counts, self._window[self._window >= 0], 1)
        for user_id, item_ids in seen.items():
            row = self.users.row_of(user_id)
            if row is not None:
                rows = [i for i in (self.items.row_of(x) for x in item_ids) if i is not None]
                self._seen[row].update(dict.fromkeys(rows[-self.params.max_seen_items :]))

    def warmup(self) -> None:
        """Compile (or load from cache) every kernel, on a throwaway model."""
        scratch = HybridModel(self.params)
        scratch.set_user_features("u0", ["age=x"])
        scratch.set_item_features("i0", ["genre=y"])
        batch = InteractionBatch.from_columns(
            ["u0", "u0", "u1", "u1", "u0"],
            ["i0", "i1", "i1", "i0", "i2"],
            [1, 2, 3, 0, 1],
            [1.0, 300.0, 4.5, 0.0, 1.0],
        )
        applied = scratch.apply(batch)
        scratch.recommend(applied.user_rows)
        scratch.take_changes()

    def _delta(
        self,
        users: npt.NDArray[np.int64],
        items: npt.NDArray[np.int64],
        contexts: Sequence[int] = (),
    ) -> ModelDelta:
        user_feats = self.users.side["features"][users]
        user_feats = np.concatenate([user_feats[user_feats >= 0], np.asarray(contexts, np.int32)])
        item_feats = self.items.side["features"][items]
        return ModelDelta(
            {
                "users": self.users.export(users),
                "items": self.items.export(items),
                "user_features": self.user_features.export(np.unique(user_feats).astype(np.int64)),
                "item_features": self.item_features.export(
                    np.unique(item_feats[item_feats >= 0]).astype(np.int64)
                ),
            },
            {
                "rating_stats": self._rating_stats.astype("<f8").tobytes(),
                "window": self._window.astype("<i4").tobytes(),
                "window_position": self._window_position.astype("<i8").tobytes(),
            },
        )

    def _set_features(
        self,
        table: EntityTable,
        vocabulary: EntityTable,
        entity_id: str,
        tokens: Sequence[str],
    ) -> int:
        row = int(table.rows_for([entity_id])[0])
        self._grow()
        kept = list(dict.fromkeys(tokens))[: self.params.max_features]
        feats = table.side["features"]
        feats[row] = -1
        if kept:
            feats[row, : len(kept)] = vocabulary.rows_for(kept).astype(np.int32)
        return row

    def _effective(
        self,
        table: EntityTable,
        vocabulary: EntityTable,
        rows: npt.NDArray[np.int64],
        bias_offset: int,
        feature_bias_col: int,
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """Effective vectors (m, k) and ranking biases (m,) of the given rows."""
        out = np.empty((rows.shape[0], self.k), np.float32)
        bias = np.empty(rows.shape[0], np.float32)
        bias_col = self.k + bias_offset if bias_offset >= 0 else -1
        effective_rows(
            table.rows,
            rows,
            table.side["features"],
            vocabulary.rows,
            bias_col,
            feature_bias_col,
            out,
            bias,
        )
        return out, bias

    def _grow(self) -> None:
        n_users = len(self.users)
        if len(self._seen) < n_users:
            self._seen.extend({} for _ in range(n_users - len(self._seen)))
        if self._dirty_users.shape[0] < self.users.rows.shape[0]:
            self._dirty_users = grown(self._dirty_users, self.users.rows.shape[0], 0)
        if self._dirty_items.shape[0] < self.items.rows.shape[0]:
            self._dirty_items = grown(self._dirty_items, self.items.rows.shape[0], 0)
            self._window_counts = grown(self._window_counts, self.items.rows.shape[0], 0)

    def _exclusions(
        self, user_rows: npt.NDArray[np.int64]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """The seen items of ``user_rows`` as CSR (indptr, indices)."""
        seen = [self._seen[r] for r in user_rows.tolist()]
        indptr = np.zeros(len(seen) + 1, np.int64)
        np.cumsum([len(s) for s in seen], out=indptr[1:])
        indices = np.fromiter(chain.from_iterable(seen), np.int64, int(indptr[-1]))
        return indptr, indices
