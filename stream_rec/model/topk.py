"""Batched top-k over all items: a float32 matmul per block of users, then a compiled pass
per user that blends in the session scores, masks excluded items and selects the best k.

Blend: score(c) = f(c) + session_weight * (std_f / std_s) * s(c), where f is the factor
score (u.q_c + c_c) and s the sparse session score; std_f and std_s are their standard
deviations over all items. That is the sum of both z-scores up to a per-user constant, so
neither part's scale decides the mix, and a user without a session gets pure factors.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from stream_rec.model._jit import compiled
from stream_rec.model.session import session_scores

SCRATCH_FLOATS = 4_000_000
"""Scores computed at once: the users of a block times all items stay under this."""


class SessionQuery(NamedTuple):
    """The session side of a top-k call (see :mod:`stream_rec.model.session`)."""

    recent: npt.NDArray[np.int32]  # (m, L): the users' recent positives, newest first
    neighbours: npt.NDArray[np.int32]  # (n, N)
    weights: npt.NDArray[np.float32]  # (n, N)
    damping: npt.NDArray[np.float32]  # (n,): (1 + n_c) ** -popularity_exponent
    decay: float
    weight: float


@compiled
def _blend(
    scores: npt.NDArray[np.float32],
    first: int,
    recent: npt.NDArray[np.int32],
    neighbours: npt.NDArray[np.int32],
    weights: npt.NDArray[np.float32],
    damping: npt.NDArray[np.float32],
    decay: float,
    session_weight: float,
) -> None:
    """Add each user's scaled session scores to its row of factor scores, in place.

    Row b of ``scores`` belongs to user ``first + b`` of the call (its row of ``recent``).
    """
    m, n = scores.shape
    if session_weight <= 0.0 or recent.shape[1] == 0:
        return
    scratch = np.zeros(n)
    touched = np.zeros(n, np.int64)
    for b in range(m):
        count = session_scores(
            recent, first + b, neighbours, weights, damping, decay, scratch, touched
        )
        if count == 0:
            continue
        total = 0.0
        total_sq = 0.0
        for c in range(n):
            v = scores[b, c]
            total += v
            total_sq += v * v
        var_f = max(total_sq / n - (total / n) ** 2, 0.0)
        s_total = 0.0
        s_sq = 0.0
        for t in range(count):
            v = scratch[touched[t]]
            s_total += v
            s_sq += v * v
        var_s = max(s_sq / n - (s_total / n) ** 2, 0.0)
        if var_s > 0.0:
            # Both parts z-scored: f/std_f + w s/std_s ranks as f + w (std_f/std_s) s.
            scale = session_weight * np.sqrt(var_f / var_s) if var_f > 0.0 else 1.0
            for t in range(count):
                c = touched[t]
                scores[b, c] += scale * scratch[c]
        for t in range(count):
            scratch[touched[t]] = 0.0


@compiled
def _select(
    scores: npt.NDArray[np.float32],
    first: int,
    exclude_indptr: npt.NDArray[np.int64],
    exclude_indices: npt.NDArray[np.int64],
    top_items: npt.NDArray[np.int64],
    top_scores: npt.NDArray[np.float32],
) -> None:
    """Mask excluded items and keep each row's best k (sorted; ties: lower index first)."""
    m, n = scores.shape
    k = top_items.shape[1]
    for b in range(m):
        r = first + b
        for t in range(exclude_indptr[r], exclude_indptr[r + 1]):
            c = exclude_indices[t]
            if 0 <= c < n:
                scores[b, c] = -np.inf
        worst = top_scores[r, k - 1]
        for c in range(n):
            s = scores[b, c]
            if s > worst:
                p = k - 1
                while p > 0 and top_scores[r, p - 1] < s:
                    top_scores[r, p] = top_scores[r, p - 1]
                    top_items[r, p] = top_items[r, p - 1]
                    p -= 1
                top_scores[r, p] = s
                top_items[r, p] = c
                worst = top_scores[r, k - 1]


def blended_scores(
    user_vectors: npt.NDArray[np.float32],
    item_vectors: npt.NDArray[np.float32],
    item_bias: npt.NDArray[np.float32],
    session: SessionQuery | None = None,
    first: int = 0,
) -> npt.NDArray[np.float32]:
    """Scores (m, n) of every item for each user: factors plus the scaled session part.

    ``first`` is the position of ``user_vectors[0]`` in ``session.recent``.
    """
    scores = user_vectors @ item_vectors.T
    scores += item_bias
    if session is not None:
        _blend(
            scores,
            first,
            session.recent,
            session.neighbours,
            session.weights,
            session.damping,
            session.decay,
            session.weight,
        )
    return scores


def top_k(
    user_vectors: npt.NDArray[np.float32],
    item_vectors: npt.NDArray[np.float32],
    item_bias: npt.NDArray[np.float32],
    exclude_indptr: npt.NDArray[np.int64],
    exclude_indices: npt.NDArray[np.int64],
    k: int,
    session: SessionQuery | None = None,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """The k best items for each user by ``user . item + item_bias`` (+ session), excluding some.

    Shapes: users (m, d), items (n, d), bias (n,); user r's excluded item rows are
    ``exclude_indices[exclude_indptr[r]:exclude_indptr[r + 1]]`` (CSR). Returns item rows
    (m, k) int64 and scores (m, k) float32, best first; where fewer than k items remain,
    the tail holds item -1 with score -inf.

    >>> users = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
    >>> items = np.array([[3.0, 0.0], [2.0, 1.0], [0.0, 5.0]], np.float32)
    >>> rows, scores = top_k(users, items, np.zeros(3, np.float32),
    ...                      np.array([0, 1, 1]), np.array([0]), k=2)
    >>> rows.tolist(), scores.tolist()
    ([[1, 2], [2, 1]], [[2.0, 0.0], [5.0, 1.0]])
    """
    m = user_vectors.shape[0]
    n = item_vectors.shape[0]
    top_items = np.full((m, k), -1, np.int64)
    top_scores = np.full((m, k), -np.inf, np.float32)
    if n == 0 or m == 0:
        return top_items, top_scores
    block = max(1, SCRATCH_FLOATS // n)
    for first in range(0, m, block):
        stop = min(first + block, m)
        scores = blended_scores(user_vectors[first:stop], item_vectors, item_bias, session, first)
        _select(scores, first, exclude_indptr, exclude_indices, top_items, top_scores)
    return top_items, top_scores
