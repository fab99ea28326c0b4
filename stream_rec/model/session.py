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
