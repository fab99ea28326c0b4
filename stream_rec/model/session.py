"""The session signal: what a user took in its last few events, and which items go together.

Three pieces of state, all updated by the event kernel on every positive:
- ``recent`` (users x L, int32): the user's latest positives, newest first (-1 = empty);
- co-visitation (items x N): for each item up to N neighbours with weights, incremented by
  session_decay**l whenever the two were taken l positives apart by the same user. When a
  row is full, a new neighbour replaces the weakest and inherits its weight (Space-Saving:
  strong neighbours are never lost, memory stays O(items x N));
- the popularity window: a ring of the latest positives (and each item's count in it), an
  estimate of recent popularity for cold lists and for drawing negatives.
At ranking time the user's recent items are the query: score(c) = sum over recent j at
distance l of session_decay**l * w(j, c) / (1 + n_c)**popularity_exponent.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from stream_rec.model._jit import compiled


@compiled
def covisit(
    neighbours: npt.NDArray[np.int32],
    weights: npt.NDArray[np.float32],
    row: int,
    other: int,
    weight: float,
) -> None:
    """Add ``weight`` to the pair (row -> other), making room by Space-Saving if full.

    Filled slots are contiguous from 0: a slot is only ever filled or replaced.
    """
    width = neighbours.shape[1]
    weakest = 0
    weakest_w = np.inf
    for s in range(width):
        current = neighbours[row, s]
        if current == other:
            weights[row, s] += weight
            return
        if current < 0:
            neighbours[row, s] = other
            weights[row, s] = weight
            return
        if weights[row, s] < weakest_w:
            weakest_w = weights[row, s]
            weakest = s
    neighbours[row, weakest] = other
    weights[row, weakest] = weakest_w + weight


@compiled
def merge_neighbours(
    stored: npt.NDArray[np.int32],
    stored_weights: npt.NDArray[np.float32],
    base: npt.NDArray[np.int32],
    base_weights: npt.NDArray[np.float32],
    current: npt.NDArray[np.int32],
    current_weights: npt.NDArray[np.float32],
    out: npt.NDArray[np.int32],
    out_weights: npt.NDArray[np.float32],
) -> None:
    """Row by row, the stored neighbour lists plus one writer's change (current - base):
    each neighbour's weight is stored + current - base (0 where a list lacks it); the
    strongest positive ones fill ``out`` from slot 0 (ties: lower id first), -1/0 after.

    All arrays (m, width). How two workers' co-visitation counts combine: both counted
    steps survive, and an eviction by one writer only takes away what it had seen.

    >>> i4, f4 = np.int32, np.float32
    >>> out, out_w = np.empty((1, 2), i4), np.empty((1, 2), f4)
    >>> merge_neighbours(                       # stored 7:5 (another writer added 1 to 4),
    ...     np.array([[7, -1]], i4), np.array([[5.0, 0.0]], f4),
    ...     np.array([[7, -1]], i4), np.array([[4.0, 0.0]], f4),  # base 7:4,
    ...     np.array([[7, 9]], i4), np.array([[4.5, 2.0]], f4),   # this writer: +0.5, new 9
    ...     out, out_w)
    >>> out.tolist(), out_w.tolist()
    ([[7, 9]], [[5.5, 2.0]])
    """
    m, width = current.shape
    ids = np.empty(3 * width, np.int64)
    weights = np.empty(3 * width, np.float64)
    for r in range(m):
        n = 0
        for s in range(width):
            if stored[r, s] >= 0:
                ids[n] = stored[r, s]
                weights[n] = stored_weights[r, s]
                n += 1
            if base[r, s] >= 0:
                ids[n] = base[r, s]
                weights[n] = -base_weights[r, s]
                n += 1
            if current[r, s] >= 0:
                ids[n] = current[r, s]
                weights[n] = current_weights[r, s]
                n += 1
        order = np.argsort(ids[:n], kind="mergesort")
        unique = np.empty(n, np.int64)
        sums = np.zeros(n, np.float64)
        u = -1
        for o in order:
            if u < 0 or unique[u] != ids[o]:
                u += 1
                unique[u] = ids[o]
            sums[u] += weights[o]
        count = u + 1
        ranked = np.argsort(-sums[:count], kind="mergesort")  # stable: lower id first
        filled = 0
        for o in ranked:
            if filled == width or sums[o] <= 0.0:
                break
            out[r, filled] = unique[o]
            out_weights[r, filled] = sums[o]
            filled += 1
        for s in range(filled, width):
            out[r, s] = -1
            out_weights[r, s] = 0.0


@compiled
def push_recent(recent: npt.NDArray[np.int32], user: int, item: int) -> None:
    """Put ``item`` first in the user's recent positives (moving it if already there)."""
    length = recent.shape[1]
    if length == 0:
        return
    last = length - 1
    for s in range(length):
        if recent[user, s] == item or recent[user, s] < 0:
            last = s
            break
    for s in range(last, 0, -1):
        recent[user, s] = recent[user, s - 1]
    recent[user, 0] = item


@compiled
def push_window(
    window: npt.NDArray[np.int32],
    position: npt.NDArray[np.int64],
    counts: npt.NDArray[np.int32],
    item: int,
) -> None:
    """Append ``item`` to the popularity ring, evicting the oldest entry when full."""
    slot = position[0] % window.shape[0]
    old = window[slot]
    if old >= 0:
        counts[old] -= 1
    window[slot] = item
    counts[item] += 1
    position[0] += 1


@compiled
def session_scores(
    recent: npt.NDArray[np.int32],
    user: int,
    neighbours: npt.NDArray[np.int32],
    weights: npt.NDArray[np.float32],
    damping: npt.NDArray[np.float32],
    decay: float,
    scratch: npt.NDArray[np.float64],
    touched: npt.NDArray[np.int64],
) -> int:
    """Accumulate the user's session scores into ``scratch``; return how many items got one.

    ``touched[:n]`` lists those items; ``damping[c]`` is (1 + n_c)**-popularity_exponent.
    The caller resets ``scratch`` at the touched items after use.
    """
    n = 0
    w_l = 1.0
    for distance in range(recent.shape[1]):
        j = recent[user, distance]
        if j < 0:
            break
        for s in range(neighbours.shape[1]):
            c = neighbours[j, s]
            if c < 0:
                break
            if scratch[c] == 0.0:
                touched[n] = c
                n += 1
            scratch[c] += w_l * weights[j, s] * damping[c]
        w_l *= decay
    return n
