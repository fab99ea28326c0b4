"""Batched top-k over all items: a blocked float32 matmul plus a compiled selection scan."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from stream_rec.model._jit import compiled

ITEM_BLOCK = 4096
"""Items scored per matmul block: bounds the scratch matrix to users x ITEM_BLOCK floats."""


@compiled
def _scan_block(
    scores: npt.NDArray[np.float32],
    offset: int,
    exclude_indptr: npt.NDArray[np.int64],
    exclude_indices: npt.NDArray[np.int64],
    top_items: npt.NDArray[np.int64],
    top_scores: npt.NDArray[np.float32],
) -> None:
    """Merge one block of scores (items ``offset..``) into each row's running top-k.

    Excluded items are masked to -inf first; a row's top-k stays sorted, best first, and
    of equal scores the lower item index wins.
    """
    m, width = scores.shape
    k = top_items.shape[1]
    for r in range(m):
        for t in range(exclude_indptr[r], exclude_indptr[r + 1]):
            c = exclude_indices[t] - offset
            if 0 <= c < width:
                scores[r, c] = -np.inf
        worst = top_scores[r, k - 1]
        for c in range(width):
            s = scores[r, c]
            if s > worst:
                p = k - 1
                while p > 0 and top_scores[r, p - 1] < s:
                    top_scores[r, p] = top_scores[r, p - 1]
                    top_items[r, p] = top_items[r, p - 1]
                    p -= 1
                top_scores[r, p] = s
                top_items[r, p] = offset + c
                worst = top_scores[r, k - 1]


def top_k(
    user_vectors: npt.NDArray[np.float32],
    item_vectors: npt.NDArray[np.float32],
    item_bias: npt.NDArray[np.float32],
    exclude_indptr: npt.NDArray[np.int64],
    exclude_indices: npt.NDArray[np.int64],
    k: int,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """The k best items for each user by ``user . item + item_bias``, excluding some.

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
    top_items = np.full((m, k), -1, np.int64)
    top_scores = np.full((m, k), -np.inf, np.float32)
    n = item_vectors.shape[0]
    for start in range(0, n, ITEM_BLOCK):
        stop = min(start + ITEM_BLOCK, n)
        scores = user_vectors @ item_vectors[start:stop].T
        scores += item_bias[start:stop]
        _scan_block(scores, start, exclude_indptr, exclude_indices, top_items, top_scores)
    return top_items, top_scores
