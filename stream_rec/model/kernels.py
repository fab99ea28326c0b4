"""Compiled SGD kernels: one step per event, in order, over shared factor tables.

Layout of the tables (float32, C order):
- users ``U``: shape (n_users, k + 1): p_u in ``[0, k)``, the rating bias b_u at ``k``
- items ``V``: shape (n_items, k + 2): q_i in ``[0, k)``, the rating bias b_i at ``k`` and the
  ranking bias c_i (a learned popularity prior) at ``k + 1``

Two objectives share p_u and q_i:
- explicit, on ratings: squared error of mu + b_u + b_i + p_u.q_i (biased MF, L2);
- implicit, on positives (clicks, watches, high ratings): a confidence-weighted BPR step
  against the highest-scored of ``negatives`` uniformly sampled items.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from stream_rec.model._jit import compiled
from stream_rec.model.batch import EventKind
from stream_rec.model.params import ModelParams
from stream_rec.model.random import mix64, next_state

# Positions in the hyper-parameter vector handed to the kernel.
HP_LR = 0
HP_BIAS_LR = 1
HP_REG = 2
HP_BIAS_REG = 3
HP_NEGATIVES = 4
HP_CLICK_W = 5
HP_WATCH_W = 6
HP_MIN_WATCH = 7
HP_DEFAULT_DURATION = 8
HP_RATING_W = 9
HP_POSITIVE_RATING = 10
HP_EXPLICIT_W = 11
HP_RANK_LR = 12
HP_SIZE = 13

# Positions in the loss accumulator.
LOSS_SQUARED_ERROR = 0
LOSS_RATINGS = 1
LOSS_RANKING = 2
LOSS_POSITIVES = 3
LOSS_SIZE = 4

_IMPRESSION = np.int8(EventKind.IMPRESSION)
_CLICK = np.int8(EventKind.CLICK)
_WATCH = np.int8(EventKind.WATCH)
_RATING = np.int8(EventKind.RATING)


def hyper_vector(params: ModelParams) -> npt.NDArray[np.float64]:
    """The kernel's view of ``params`` (float64, shape (HP_SIZE,))."""
    hp = np.zeros(HP_SIZE, np.float64)
    hp[HP_LR] = params.learning_rate
    hp[HP_BIAS_LR] = params.bias_learning_rate
    hp[HP_REG] = params.regularization
    hp[HP_BIAS_REG] = params.bias_regularization
    hp[HP_NEGATIVES] = params.negatives
    hp[HP_CLICK_W] = params.click_weight
    hp[HP_WATCH_W] = params.watch_weight
    hp[HP_MIN_WATCH] = params.min_watch_fraction
    hp[HP_DEFAULT_DURATION] = params.default_duration_seconds
    hp[HP_RATING_W] = params.rating_weight
    hp[HP_POSITIVE_RATING] = params.positive_rating
    hp[HP_EXPLICIT_W] = params.explicit_weight
    hp[HP_RANK_LR] = params.ranking_learning_rate
    return hp


@compiled
def positive_weight(
    kind: np.int8, value: float, duration: float, hp: npt.NDArray[np.float64]
) -> float:
    """Confidence of an event as a positive for ranking; 0 means not a positive."""
    if kind == _CLICK:
        return float(hp[HP_CLICK_W])
    if kind == _WATCH:
        length = duration if duration > 0.0 else hp[HP_DEFAULT_DURATION]
        fraction = min(max(value / length, 0.0), 1.0)
        if fraction < hp[HP_MIN_WATCH]:
            return 0.0
        return float(hp[HP_WATCH_W] * fraction)
    if kind == _RATING and value >= hp[HP_POSITIVE_RATING]:
        return float(hp[HP_RATING_W])
    return 0.0


@compiled
def _explicit_step(
    U: npt.NDArray[np.float32],
    V: npt.NDArray[np.float32],
    u: int,
    i: int,
    rating: float,
    mu: float,
    hp: npt.NDArray[np.float64],
) -> float:
    """One SGD step on (rating - mu - b_u - b_i - p_u.q_i)^2 + L2; returns the error."""
    k = U.shape[1] - 1
    dot = 0.0
    for f in range(k):
        dot += U[u, f] * V[i, f]
    err = rating - (mu + U[u, k] + V[i, k] + dot)
    scale = hp[HP_EXPLICIT_W]
    lr = hp[HP_LR] * scale
    blr = hp[HP_BIAS_LR] * scale
    reg = hp[HP_REG]
    breg = hp[HP_BIAS_REG]
    # d/d b = -err: both biases step toward the residual.
    U[u, k] += blr * (err - breg * U[u, k])
    V[i, k] += blr * (err - breg * V[i, k])
    for f in range(k):
        pu = U[u, f]
        qi = V[i, f]
        # d/d p_u = -err * q_i, d/d q_i = -err * p_u (old values: a simultaneous step).
        U[u, f] += lr * (err * qi - reg * pu)
        V[i, f] += lr * (err * pu - reg * qi)
    return float(err)


@compiled
def _ranking_score(U: npt.NDArray[np.float32], V: npt.NDArray[np.float32], u: int, j: int) -> float:
    """p_u.q_j + c_j, the score that ranks items for a user."""
    k = U.shape[1] - 1
    s = 0.0
    for f in range(k):
        s += U[u, f] * V[j, f]
    return float(s + V[j, k + 1])


@compiled
def _bpr_step(
    U: npt.NDArray[np.float32],
    V: npt.NDArray[np.float32],
    u: int,
    i: int,
    j: int,
    weight: float,
    hp: npt.NDArray[np.float64],
) -> float:
    """One weighted BPR step: raise x_uij = s_ui - s_uj; returns the loss -w log sigma(x)."""
    k = U.shape[1] - 1
    x = _ranking_score(U, V, u, i) - _ranking_score(U, V, u, j)
    x = min(max(x, -30.0), 30.0)
    # d/dx of -log sigma(x) is -sigma(-x): the step shrinks as the pair gets ordered.
    g = weight / (1.0 + math.exp(x))
    lr = hp[HP_RANK_LR]
    blr = hp[HP_BIAS_LR]
    reg = hp[HP_REG]
    breg = hp[HP_BIAS_REG]
    for f in range(k):
        pu = U[u, f]
        qi = V[i, f]
        qj = V[j, f]
        U[u, f] += lr * (g * (qi - qj) - reg * pu)
        V[i, f] += lr * (g * pu - reg * qi)
        V[j, f] += lr * (-g * pu - reg * qj)
    V[i, k + 1] += blr * (g - breg * V[i, k + 1])
    V[j, k + 1] += blr * (-g - breg * V[j, k + 1])
    return weight * math.log1p(math.exp(-x))


@compiled
def _hardest_negative(
    U: npt.NDArray[np.float32],
    V: npt.NDArray[np.float32],
    u: int,
    positive: int,
    n_known: int,
    draws: int,
    state: np.uint64,
) -> int:
    """The highest-scored of ``draws`` items sampled uniformly from [0, n_known), or -1."""
    best = -1
    best_score = -np.inf
    for _ in range(draws):
        state = next_state(state)
        j = int(np.int64(mix64(state) % np.uint64(n_known)))
        if j == positive:
            continue
        s = _ranking_score(U, V, u, j)
        if s > best_score:
            best_score = s
            best = j
    return best


@compiled
def apply_events(
    U: npt.NDArray[np.float32],
    V: npt.NDArray[np.float32],
    user_counts: npt.NDArray[np.int64],
    item_counts: npt.NDArray[np.int64],
    user_keys: npt.NDArray[np.uint64],
    users: npt.NDArray[np.int64],
    items: npt.NDArray[np.int64],
    kinds: npt.NDArray[np.int8],
    values: npt.NDArray[np.float32],
    durations: npt.NDArray[np.float32],
    n_known_items: int,
    rating_stats: npt.NDArray[np.float64],
    hp: npt.NDArray[np.float64],
    seed: int,
    losses: npt.NDArray[np.float64],
    negatives_out: npt.NDArray[np.int64],
) -> int:
    """Apply events ``e = 0..n-1`` in order, one SGD step each; return the known item count.

    Item rows must have been assigned in order of first appearance, so that an event only
    samples negatives among items that had appeared by then (``n_known_items`` counts those
    before the batch). ``rating_stats`` is [sum, count] of all ratings so far (mu is their
    mean); counts and ``losses`` accumulate in place. ``negatives_out[e]`` receives the
    item row stepped as event e's negative, or -1: those rows changed too.
    """
    draws = int(hp[HP_NEGATIVES])
    seed_key = mix64(np.uint64(seed))
    n_known = n_known_items
    for e in range(users.shape[0]):
        u = users[e]
        i = items[e]
        kind = kinds[e]
        if i >= n_known:
            n_known = i + 1
        # The user's event number keys its random draws: independent of batching.
        state = mix64(user_keys[u] ^ seed_key) ^ np.uint64(user_counts[u])
        user_counts[u] += 1
        item_counts[i] += 1
        if kind == _RATING:
            rating_stats[0] += values[e]
            rating_stats[1] += 1.0
            mu = rating_stats[0] / rating_stats[1]
            err = _explicit_step(U, V, u, i, values[e], mu, hp)
            losses[LOSS_SQUARED_ERROR] += err * err
            losses[LOSS_RATINGS] += 1.0
        negatives_out[e] = -1
        weight = positive_weight(kind, values[e], durations[e], hp)
        if weight > 0.0 and n_known > 1:
            j = _hardest_negative(U, V, u, i, n_known, draws, state)
            negatives_out[e] = j
            if j >= 0:
                losses[LOSS_RANKING] += _bpr_step(U, V, u, i, j, weight, hp)
                losses[LOSS_POSITIVES] += 1.0
    return n_known
