"""Batched top-k over all items: a float32 matmul per tile of users x items, then a
compiled pass per user that blends in the session scores, masks excluded items and
selects the best k.

Blocks of users are scored in parallel lanes, one thread per core (the matmul and the
compiled passes release the GIL), with BLAS held to one thread inside each.

The item bias rides in the matmul (a column of ones on the users' side, the biases on the
items'), so no separate pass adds it. Without a session, tiles are
:data:`USER_BLOCK` users by as many items as keep the tile under
:data:`SCRATCH_FLOATS`: big enough a matmul for BLAS to run near its peak, small enough
for its scores to stay in cache for the selection. The session blend needs each user's
scores over all items (their spread), so with a session a tile spans the catalogue.

Blend: score(c) = f(c) + session_weight * (std_f / std_s) * s(c), where f is the factor
score (u.q_c + c_c) and s the sparse session score; std_f and std_s are their standard
deviations over all items. That is the sum of both z-scores up to a per-user constant, so
neither part's scale decides the mix, and a user without a session gets pure factors.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
from threadpoolctl import ThreadpoolController

from stream_rec.model._jit import compiled
from stream_rec.model.session import session_scores

SCRATCH_FLOATS = 1_000_000
"""Scores computed at once: a tile's users times its items stay under this (4 MB)."""
USER_BLOCK = 256
"""Users of a tile when the items are tiled too (no session)."""
SELECT_RUN = 64
"""Items the selection counts at once before it looks at any one of them."""
LANE_MIN_USERS = 16
"""Fewer users than this to each lane are scored in fewer lanes (a thread's hand-off costs
about what scoring a few users over 10k items does)."""


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
    offset: int,
    exclude_indptr: npt.NDArray[np.int64],
    exclude_indices: npt.NDArray[np.int64],
    top_items: npt.NDArray[np.int64],
    top_scores: npt.NDArray[np.float32],
) -> None:
    """Mask excluded items and merge each row's best into the user's k best so far
    (sorted; ties: lower index first). Row b is user ``first + b``; column c is item
    ``offset + c``.

    Each run of :data:`SELECT_RUN` items is first counted against the k-th best so far
    (a loop the compiler vectorises); only a run that holds a better item is walked one
    item at a time - after the first few runs of a row, hardly any.
    """
    m, n = scores.shape
    k = top_items.shape[1]
    full = n - n % SELECT_RUN
    for b in range(m):
        r = first + b
        for t in range(exclude_indptr[r], exclude_indptr[r + 1]):
            c = exclude_indices[t] - offset
            if 0 <= c < n:
                scores[b, c] = -np.inf
        worst = top_scores[r, k - 1]
        for start in range(0, n, SELECT_RUN):
            if start < full:
                above = 0
                for c in range(start, start + SELECT_RUN):
                    if scores[b, c] > worst:
                        above += 1
                if above == 0:
                    continue
            for c in range(start, min(start + SELECT_RUN, n)):
                s = scores[b, c]
                if s > worst:
                    p = k - 1
                    while p > 0 and top_scores[r, p - 1] < s:
                        top_scores[r, p] = top_scores[r, p - 1]
                        top_items[r, p] = top_items[r, p - 1]
                        p -= 1
                    top_scores[r, p] = s
                    top_items[r, p] = offset + c
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
    scores += item_bias  # (top_k folds it into its matmul; for a few users a copy costs more)
    _blend_session(scores, session, first)
    return scores


def _blend_session(
    scores: npt.NDArray[np.float32], session: SessionQuery | None, first: int
) -> None:
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


def _with_column(
    vectors: npt.NDArray[np.float32], column: npt.NDArray[np.float32] | float
) -> npt.NDArray[np.float32]:
    """``vectors`` with one more column after them (the items' biases on their side, ones
    on the users', to take them up), then zeros up to a multiple of 8 columns."""
    out = _aligned_zeros(vectors.shape[0], _padded(vectors.shape[1]))
    out[:, : vectors.shape[1]] = vectors
    out[:, vectors.shape[1]] = column
    return out


def _padded(dims: int) -> int:
    """Columns for ``dims`` and the bias column: rounded up to a multiple of 8 floats. With
    65 columns (k = 64), BLAS ran at two speeds from one call to the next (buffers' offsets
    in memory); padded and page-aligned it keeps the faster one."""
    return -(-(dims + 1) // 8) * 8


def _aligned_zeros(rows: int, columns: int) -> npt.NDArray[np.float32]:
    """A zeroed float32 (rows, columns) array that starts on a 4 KiB page."""
    raw = np.zeros(rows * columns * 4 + 4096, np.uint8)
    start = -raw.ctypes.data % 4096
    view: npt.NDArray[np.float32] = raw[start : start + rows * columns * 4].view(np.float32)
    return view.reshape(rows, columns)


def _balanced(m: int, block: int) -> int:
    """Users per block, at most ``block``: as many blocks as a multiple of the lanes
    (where there are users enough for each lane), so that no lane waits on the others."""
    lanes = min(_LANES, m // LANE_MIN_USERS)
    if lanes <= 1:
        return block
    count = -(-m // block)
    count = -(-count // lanes) * lanes
    return -(-m // count)


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
    users, items = _with_column(user_vectors, 1.0), _with_column(item_vectors, item_bias)
    if session is None:
        block = min(m, USER_BLOCK)
        span = max(1, SCRATCH_FLOATS // block)
    else:  # the blend needs whole rows
        block = max(1, min(m, SCRATCH_FLOATS // n))
        span = n
    block = _balanced(m, block)
    blocks = list(range(0, m, block))
    lanes = min(_LANES, len(blocks))

    def lane(number: int) -> None:
        # Every lane its own scratch, and its own users: their rows of the output.
        scratch = _aligned_zeros(1, block * min(span, n))[0]
        for first in blocks[number::lanes]:
            stop = min(first + block, m)
            for start in range(0, n, span):
                end = min(start + span, n)
                shape = (stop - first, end - start)
                scores = scratch[: shape[0] * shape[1]].reshape(shape)
                np.matmul(users[first:stop], items[start:end].T, out=scores)
                _blend_session(scores, session, first)
                _select(
                    scores, first, start, exclude_indptr, exclude_indices, top_items, top_scores
                )

    if lanes == 1:
        lane(0)
    else:
        # The lanes are the parallelism: each one's matmuls on one BLAS thread (BLAS's own
        # threads on top of them made every call wait on the others).
        pool, blas = _lanes()
        with _ONE_CALL_AT_A_TIME, blas.limit(limits=1, user_api="blas"):
            list(pool.map(lane, range(lanes)))
    return top_items, top_scores


_LANES = max(1, min(4, os.cpu_count() or 1))
"""Blocks of users scored at once, one thread each (matmul and selection release the GIL)."""
_STARTED: list[tuple[ThreadPoolExecutor, ThreadpoolController]] = []
_ONE_CALL_AT_A_TIME = threading.Lock()
"""Calls from several threads take the lanes in turn: each uses every core, and BLAS's
thread count (which the lanes set and restore) is the process's."""


def _lanes() -> tuple[ThreadPoolExecutor, ThreadpoolController]:
    """The lanes' threads and the BLAS thread control, made on first use."""
    with _ONE_CALL_AT_A_TIME:
        if not _STARTED:
            pool = ThreadPoolExecutor(_LANES, thread_name_prefix="top-k")
            _STARTED.append((pool, ThreadpoolController()))
        return _STARTED[0]
