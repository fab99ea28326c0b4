"""Compiled SGD kernels: one step per event, in order, over shared tables.

Row layouts (float32):
- users ``U`` (k + 2): p_u in ``[0, k)``, rating bias b_u at ``k``, AdaGrad accumulator at ``k + 1``
- items ``V`` (k + 3): q_i, rating bias b_i at ``k``, ranking bias c_i at ``k + 1``, accumulator
- user features ``FU`` (k + 1): e_f, accumulator
- item features ``FI`` (k + 2): e_f, c_f (the feature's ranking bias), accumulator

An entity's effective vector is its own plus the mean of its features' vectors (LightFM's
hybrid, averaged so a shared feature does not swamp the entity); gradients reach the own
vector at the entity's step and each feature at that step times ``feature_scale`` / n.

Objectives over the same vectors:
- explicit, on ratings: (r - mu - b_u - b_i - u.i)^2 with river's gradient 2(pred - r);
- implicit, on positives: confidence-weighted BPR against the hardest of ``negatives``
  sampled items (part uniform, part by recent popularity);
- impressions: a weak logistic push down of the shown item's score.
After its steps, a positive updates the session memory (see :mod:`stream_rec.model.session`).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from stream_rec.model._jit import compiled, inlined
from stream_rec.model.batch import EventKind
from stream_rec.model.params import ModelParams
from stream_rec.model.random import mix64, next_state, uniform01
from stream_rec.model.session import covisit, push_recent, push_window

# Positions in the hyper-parameter vector handed to the kernel.
HP_LR = 0
HP_BIAS_LR = 1
HP_REG = 2
HP_BIAS_REG = 3
HP_EXPLICIT_W = 4
HP_RANK_LR = 5
HP_RANK_BIAS_LR = 6
HP_RANK_REG = 7
HP_NEGATIVES = 8
HP_POPULAR_NEG = 9
HP_CLICK_W = 10
HP_WATCH_W = 11
HP_MIN_WATCH = 12
HP_DEFAULT_DURATION = 13
HP_RATING_W = 14
HP_RATING_W_STAR = 15
HP_POSITIVE_RATING = 16
HP_IMPRESSION_W = 17
HP_FEATURE_SCALE = 18
HP_ADAGRAD = 19
HP_STEP_DECAY = 20
HP_SESSION_DECAY = 21
HP_EACH_NEGATIVE = 22
HP_SCALE_LR = 23
HP_SESSION_MIN_RATING = 24
HP_SIZE = 25

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
_EPS = 1e-8


def hyper_vector(params: ModelParams) -> npt.NDArray[np.float64]:
    """The kernel's view of ``params`` (float64, shape (HP_SIZE,))."""
    hp = np.zeros(HP_SIZE, np.float64)
    hp[HP_LR] = params.learning_rate
    hp[HP_BIAS_LR] = params.bias_learning_rate
    hp[HP_REG] = params.regularization
    hp[HP_BIAS_REG] = params.bias_regularization
    hp[HP_EXPLICIT_W] = params.explicit_weight
    hp[HP_RANK_LR] = params.ranking_learning_rate
    hp[HP_RANK_BIAS_LR] = params.ranking_bias_learning_rate
    hp[HP_RANK_REG] = params.ranking_regularization
    hp[HP_NEGATIVES] = params.negatives
    hp[HP_POPULAR_NEG] = params.popular_negatives
    hp[HP_CLICK_W] = params.click_weight
    hp[HP_WATCH_W] = params.watch_weight
    hp[HP_MIN_WATCH] = params.min_watch_fraction
    hp[HP_DEFAULT_DURATION] = params.default_duration_seconds
    hp[HP_RATING_W] = params.rating_weight
    hp[HP_RATING_W_STAR] = params.rating_weight_per_star
    hp[HP_POSITIVE_RATING] = params.positive_rating
    hp[HP_IMPRESSION_W] = params.impression_weight
    hp[HP_FEATURE_SCALE] = params.feature_learning_rate_scale
    hp[HP_ADAGRAD] = 1.0 if params.optimizer == "adagrad" else 0.0
    hp[HP_STEP_DECAY] = params.step_decay_events
    hp[HP_SESSION_DECAY] = params.session_decay
    hp[HP_EACH_NEGATIVE] = 1.0 if params.negative_steps == "each" else 0.0
    hp[HP_SCALE_LR] = params.rating_scale_learning_rate
    hp[HP_SESSION_MIN_RATING] = params.session_min_rating
    return hp


@inlined
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
        return float(hp[HP_RATING_W] + hp[HP_RATING_W_STAR] * (value - hp[HP_POSITIVE_RATING]))
    return 0.0


@compiled
def effective(
    P: npt.NDArray[np.float32],
    row: int,
    feats: npt.NDArray[np.int32],
    F: npt.NDArray[np.float32],
    out: npt.NDArray[np.float64],
) -> int:
    """out[:k] = own vector + mean of feature vectors, and out[k] = mean of the features'
    column k (the item features' ranking bias; unused for users). Returns the count."""
    k = out.shape[0] - 1
    for f in range(k):
        out[f] = P[row, f]
    out[k] = 0.0
    n = 0
    for t in range(feats.shape[1]):
        if feats[row, t] < 0:
            break
        n += 1
    if n > 0:
        inv = 1.0 / n
        for t in range(n):
            fr = feats[row, t]
            for f in range(k):
                out[f] += inv * F[fr, f]
            if F.shape[1] > k + 1:
                out[k] += inv * F[fr, k]
    return n


@inlined
def _step_size(
    P: npt.NDArray[np.float32],
    row: int,
    acc_col: int,
    grad_sq_mean: float,
    lr: float,
    count: int,
    hp: npt.NDArray[np.float64],
) -> float:
    """The step of one latent row: lr, decayed by the entity's event count if set, divided
    by the root of its accumulated mean squared gradient under AdaGrad."""
    step = lr
    if hp[HP_STEP_DECAY] > 0.0:
        step /= math.sqrt(1.0 + count / hp[HP_STEP_DECAY])
    if hp[HP_ADAGRAD] > 0.0:
        P[row, acc_col] += grad_sq_mean
        step /= math.sqrt(P[row, acc_col] + _EPS)
    return step


@compiled
def _step_rows(
    P: npt.NDArray[np.float32],
    row: int,
    acc_col: int,
    feats: npt.NDArray[np.int32],
    F: npt.NDArray[np.float32],
    grad: npt.NDArray[np.float64],
    lr: float,
    reg: float,
    count: int,
    hp: npt.NDArray[np.float64],
) -> None:
    """Descend ``grad`` (d loss / d effective vector) on an entity and its features."""
    k = grad.shape[0] - 1
    step = lr
    if hp[HP_STEP_DECAY] > 0.0:
        step /= math.sqrt(1.0 + count / hp[HP_STEP_DECAY])
    adagrad = hp[HP_ADAGRAD] > 0.0
    sq = 0.0
    if adagrad:
        for f in range(k):
            sq += grad[f] * grad[f]
    own = _step_size(P, row, acc_col, sq / k, lr, count, hp)
    for f in range(k):
        P[row, f] -= own * (grad[f] + reg * P[row, f])
    n = 0
    for t in range(feats.shape[1]):
        if feats[row, t] < 0:
            break
        n += 1
    if n == 0:
        return
    scale = step * hp[HP_FEATURE_SCALE] / n
    f_acc = F.shape[1] - 1
    for t in range(n):
        fr = feats[row, t]
        feature_step = scale
        if adagrad:
            sq = 0.0
            for f in range(k):
                sq += grad[f] * grad[f]
            F[fr, f_acc] += sq / (k * n * n)
            feature_step = scale / math.sqrt(F[fr, f_acc] + _EPS)
        for f in range(k):
            F[fr, f] -= feature_step * (grad[f] + reg * F[fr, f])


@compiled
def _step_rank_bias(
    V: npt.NDArray[np.float32],
    row: int,
    feats: npt.NDArray[np.int32],
    FI: npt.NDArray[np.float32],
    g: float,
    lr: float,
    hp: npt.NDArray[np.float64],
) -> None:
    """Descend g on c_i (the item's ranking bias) and its features' c_f."""
    k = V.shape[1] - 3
    V[row, k + 1] -= lr * g
    n = 0
    for t in range(feats.shape[1]):
        if feats[row, t] < 0:
            break
        n += 1
    for t in range(n):
        FI[feats[row, t], k] -= lr * hp[HP_FEATURE_SCALE] * g / n


@inlined
def _dot(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64], k: int) -> float:
    s = 0.0
    for f in range(k):
        s += a[f] * b[f]
    return s


@compiled
def _explicit_step(
    U: npt.NDArray[np.float32],
    V: npt.NDArray[np.float32],
    u: int,
    i: int,
    rating: float,
    mu: float,
    stats: npt.NDArray[np.float64],
    ue: npt.NDArray[np.float64],
    ie: npt.NDArray[np.float64],
    user_feats: npt.NDArray[np.int32],
    FU: npt.NDArray[np.float32],
    item_feats: npt.NDArray[np.int32],
    FI: npt.NDArray[np.float32],
    grad_u: npt.NDArray[np.float64],
    grad_i: npt.NDArray[np.float64],
    user_count: int,
    item_count: int,
    hp: npt.NDArray[np.float64],
) -> float:
    """One step on (rating - mu - b_u - b_i - s u.i)^2; returns the error before it.

    ``stats[2]`` is the global rating scale s (stepped only if its rate is positive).
    """
    k = V.shape[1] - 3
    dot = _dot(ue, ie, k)
    scale = stats[2]
    pred = mu + U[u, k] + V[i, k] + scale * dot
    err = rating - pred
    # river's Squared loss: d/d pred = 2 (pred - y), scaled by the objective's weight.
    g = 2.0 * (pred - rating) * hp[HP_EXPLICIT_W]
    blr = hp[HP_BIAS_LR]
    breg = hp[HP_BIAS_REG]
    U[u, k] -= blr * (g + breg * U[u, k])
    V[i, k] -= blr * (g + breg * V[i, k])
    for f in range(k):
        grad_u[f] = g * scale * ie[f]  # d/d u = g s i, d/d i = g s u: a simultaneous step
        grad_i[f] = g * scale * ue[f]
    stats[2] -= hp[HP_SCALE_LR] * g * dot
    _step_rows(U, u, k + 1, user_feats, FU, grad_u, hp[HP_LR], hp[HP_REG], user_count, hp)
    _step_rows(V, i, k + 2, item_feats, FI, grad_i, hp[HP_LR], hp[HP_REG], item_count, hp)
    return float(err)


@inlined
def _row_dot(
    U: npt.NDArray[np.float32], u: int, V: npt.NDArray[np.float32], i: int, k: int
) -> float:
    """p_u . q_i on the rows, with a float32 accumulator (SIMD on the rows' own type)."""
    acc = np.float32(0.0)
    for f in range(k):
        acc += U[u, f] * V[i, f]
    return float(acc)


@inlined
def _explicit_rates(hp: npt.NDArray[np.float64]) -> tuple[float, float, float, float, float, float]:
    """(weight, lr, bias lr, reg, bias reg, scale lr) of the explicit step, read once per
    batch so that the loop keeps them in registers."""
    return (
        float(hp[HP_EXPLICIT_W]),
        float(hp[HP_LR]),
        float(hp[HP_BIAS_LR]),
        float(hp[HP_REG]),
        float(hp[HP_BIAS_REG]),
        float(hp[HP_SCALE_LR]),
    )


@inlined
def _explicit_plain(
    U: npt.NDArray[np.float32],
    V: npt.NDArray[np.float32],
    u: int,
    i: int,
    rating: float,
    mu: float,
    dot: float,
    scale: float,
    rates: tuple[float, float, float, float, float, float],
    user_count: int,
    item_count: int,
    hp: npt.NDArray[np.float64],
    plain_sgd: bool,
) -> tuple[float, float]:
    """:func:`_explicit_step` for a user and an item without features, on their rows
    directly (the same equations; the common case, and river's). ``dot`` is p_u . q_i,
    ``scale`` the rating scale s; ``plain_sgd``: no AdaGrad and no step decay, so the steps
    are the learning rate. Returns (the error before the step, the new scale)."""
    weight, lr, blr, reg, breg, scale_lr = rates
    k = V.shape[1] - 3
    pred = mu + U[u, k] + V[i, k] + scale * dot
    err = rating - pred
    g = 2.0 * (pred - rating) * weight
    U[u, k] -= blr * (g + breg * U[u, k])
    V[i, k] -= blr * (g + breg * V[i, k])
    gs = g * scale
    step_u = lr
    step_i = lr
    if not plain_sgd:
        pp = np.float32(0.0)
        qq = np.float32(0.0)
        for f in range(k):
            pp += U[u, f] * U[u, f]
            qq += V[i, f] * V[i, f]
        step_u = _step_size(U, u, k + 1, gs * gs * qq / k, lr, user_count, hp)
        step_i = _step_size(V, i, k + 2, gs * gs * pp / k, lr, item_count, hp)
    # p -= step (g s q + reg p), q -= step (g s p + reg q), with the old p and q.
    a_u = np.float32(step_u * gs)
    a_i = np.float32(step_i * gs)
    d_u = np.float32(1.0 - step_u * reg)
    d_i = np.float32(1.0 - step_i * reg)
    for f in range(k):
        p = U[u, f]
        q = V[i, f]
        U[u, f] = d_u * p - a_u * q
        V[i, f] = d_i * q - a_i * p
    return float(err), scale - scale_lr * g * dot


@inlined
def _has_features(feats: npt.NDArray[np.int32], row: int) -> bool:
    return bool(feats.shape[1] > 0 and feats[row, 0] >= 0)


@compiled
def _draw_negative(
    state: np.uint64,
    n_known: int,
    window: npt.NDArray[np.int32],
    filled: int,
    popular_share: float,
) -> int:
    """A candidate item: from the recent-popularity window with probability
    ``popular_share`` (if it holds any), else uniform over the known items."""
    if filled > 0 and uniform01(state) < popular_share:
        slot = int(np.int64(mix64(state ^ np.uint64(0x5851F42D4C957F2D)) % np.uint64(filled)))
        return int(window[slot])
    return int(np.int64(mix64(state) % np.uint64(n_known)))


@compiled
def _bpr_step(
    U: npt.NDArray[np.float32],
    V: npt.NDArray[np.float32],
    u: int,
    i: int,
    j: int,
    weight: float,
    ue: npt.NDArray[np.float64],
    ie: npt.NDArray[np.float64],
    je: npt.NDArray[np.float64],
    user_feats: npt.NDArray[np.int32],
    FU: npt.NDArray[np.float32],
    item_feats: npt.NDArray[np.int32],
    FI: npt.NDArray[np.float32],
    grad_u: npt.NDArray[np.float64],
    grad_i: npt.NDArray[np.float64],
    grad_j: npt.NDArray[np.float64],
    counts: npt.NDArray[np.int64],
    hp: npt.NDArray[np.float64],
) -> float:
    """One weighted BPR step raising x = s_ui - s_uj; returns the loss -w log sigma(x).

    ``ue``/``ie``/``je`` hold the effective vectors, with the ranking bias at index k.
    ``counts`` holds [user, item i, item j] event counts, for step decay.
    """
    k = V.shape[1] - 3
    x = _dot(ue, ie, k) + V[i, k + 1] + ie[k] - _dot(ue, je, k) - V[j, k + 1] - je[k]
    x = min(max(x, -30.0), 30.0)
    # d(-log sigma(x))/dx = -sigma(-x): the step shrinks as the pair gets ordered.
    g = weight / (1.0 + math.exp(x))
    for f in range(k):
        grad_u[f] = -g * (ie[f] - je[f])
        grad_i[f] = -g * ue[f]
        grad_j[f] = g * ue[f]
    lr = hp[HP_RANK_LR]
    reg = hp[HP_RANK_REG]
    _step_rows(U, u, k + 1, user_feats, FU, grad_u, lr, reg, counts[0], hp)
    _step_rows(V, i, k + 2, item_feats, FI, grad_i, lr, reg, counts[1], hp)
    _step_rows(V, j, k + 2, item_feats, FI, grad_j, lr, reg, counts[2], hp)
    _step_rank_bias(V, i, item_feats, FI, -g, hp[HP_RANK_BIAS_LR], hp)
    _step_rank_bias(V, j, item_feats, FI, g, hp[HP_RANK_BIAS_LR], hp)
    return weight * math.log1p(math.exp(-x))


@compiled
def _impression_step(
    U: npt.NDArray[np.float32],
    V: npt.NDArray[np.float32],
    u: int,
    i: int,
    ue: npt.NDArray[np.float64],
    ie: npt.NDArray[np.float64],
    user_feats: npt.NDArray[np.int32],
    FU: npt.NDArray[np.float32],
    item_feats: npt.NDArray[np.int32],
    FI: npt.NDArray[np.float32],
    grad_u: npt.NDArray[np.float64],
    grad_i: npt.NDArray[np.float64],
    user_count: int,
    item_count: int,
    hp: npt.NDArray[np.float64],
) -> None:
    """A weak negative: descend w * log(1 + exp(s_ui)), pushing the shown item down."""
    k = V.shape[1] - 3
    s = min(max(_dot(ue, ie, k) + V[i, k + 1] + ie[k], -30.0), 30.0)
    g = hp[HP_IMPRESSION_W] / (1.0 + math.exp(-s))  # w * sigma(s)
    for f in range(k):
        grad_u[f] = g * ie[f]
        grad_i[f] = g * ue[f]
    lr = hp[HP_RANK_LR]
    reg = hp[HP_RANK_REG]
    _step_rows(U, u, k + 1, user_feats, FU, grad_u, lr, reg, user_count, hp)
    _step_rows(V, i, k + 2, item_feats, FI, grad_i, lr, reg, item_count, hp)
    _step_rank_bias(V, i, item_feats, FI, g, hp[HP_RANK_BIAS_LR], hp)


@compiled
def _hardest_negative(
    U: npt.NDArray[np.float32],
    V: npt.NDArray[np.float32],
    FI: npt.NDArray[np.float32],
    item_feats: npt.NDArray[np.int32],
    u: int,
    positive: int,
    ue: npt.NDArray[np.float64],
    je: npt.NDArray[np.float64],
    recent: npt.NDArray[np.int32],
    n_known: int,
    window: npt.NDArray[np.int32],
    filled: int,
    state: np.uint64,
    hp: npt.NDArray[np.float64],
    draws: int,
) -> int:
    """The highest-scored of ``draws`` candidates (not the positive, not one of the
    user's recent positives), or -1 if every draw was excluded."""
    k = V.shape[1] - 3
    best = -1
    best_score = -np.inf
    for _ in range(draws):
        state = next_state(state)
        j = _draw_negative(state, n_known, window, filled, hp[HP_POPULAR_NEG])
        if j == positive:
            continue
        taken = False
        for s in range(recent.shape[1]):
            if recent[u, s] == j:
                taken = True
                break
        if taken:
            continue
        effective(V, j, item_feats, FI, je)
        score = _dot(ue, je, k) + V[j, k + 1] + je[k]
        if score > best_score:
            best_score = score
            best = j
    return best


@compiled
def _rank_positive(
    U: npt.NDArray[np.float32],
    V: npt.NDArray[np.float32],
    FU: npt.NDArray[np.float32],
    FI: npt.NDArray[np.float32],
    user_counts: npt.NDArray[np.int64],
    item_counts: npt.NDArray[np.int64],
    user_feats: npt.NDArray[np.int32],
    item_feats: npt.NDArray[np.int32],
    recent: npt.NDArray[np.int32],
    window: npt.NDArray[np.int32],
    filled: int,
    u: int,
    i: int,
    weight: float,
    n_known: int,
    state: np.uint64,
    scratch: npt.NDArray[np.float64],
    hp: npt.NDArray[np.float64],
    losses: npt.NDArray[np.float64],
    dirty_items: npt.NDArray[np.uint8],
) -> None:
    """The BPR steps of one positive: against each sampled negative, or the hardest one.

    ``scratch`` rows: 0 ue, 1 ie, 2 je, 3-5 gradients of u, i, j.
    """
    ue, ie, je = scratch[0], scratch[1], scratch[2]
    each = hp[HP_EACH_NEGATIVE] > 0.0
    rounds = int(hp[HP_NEGATIVES]) if each else 1
    draws = 1 if each else int(hp[HP_NEGATIVES])
    counts = np.zeros(3, np.int64)
    for _ in range(rounds):
        state = next_state(state ^ np.uint64(0x632BE59BD9B4E019))
        j = _hardest_negative(
            U, V, FI, item_feats, u, i, ue, je, recent, n_known, window, filled, state, hp, draws
        )
        if j < 0:
            continue
        effective(V, j, item_feats, FI, je)
        counts[0] = user_counts[u]
        counts[1] = item_counts[i]
        counts[2] = item_counts[j]
        losses[LOSS_RANKING] += _bpr_step(
            U,
            V,
            u,
            i,
            j,
            weight,
            ue,
            ie,
            je,
            user_feats,
            FU,
            item_feats,
            FI,
            scratch[3],
            scratch[4],
            scratch[5],
            counts,
            hp,
        )
        losses[LOSS_POSITIVES] += 1.0
        dirty_items[j] = 1
        effective(U, u, user_feats, FU, ue)
        effective(V, i, item_feats, FI, ie)


@compiled
def _remember(
    recent: npt.NDArray[np.int32],
    neighbours: npt.NDArray[np.int32],
    neighbour_weights: npt.NDArray[np.float32],
    window: npt.NDArray[np.int32],
    window_position: npt.NDArray[np.int64],
    window_counts: npt.NDArray[np.int32],
    u: int,
    i: int,
    decay: float,
    dirty_items: npt.NDArray[np.uint8],
) -> None:
    """Record a taken item in the session state: co-visits with the user's recent items
    (weight decay**distance, both directions), then the recent list and the window."""
    w = 1.0
    for s in range(recent.shape[1]):
        other = recent[u, s]
        if other < 0:
            break
        if other != i:
            covisit(neighbours, neighbour_weights, other, i, w)
            covisit(neighbours, neighbour_weights, i, other, w)
            dirty_items[other] = 1
        w *= decay
    push_recent(recent, u, i)
    push_window(window, window_position, window_counts, i)


@compiled
def _rate(
    U: npt.NDArray[np.float32],
    V: npt.NDArray[np.float32],
    FU: npt.NDArray[np.float32],
    FI: npt.NDArray[np.float32],
    user_feats: npt.NDArray[np.int32],
    item_feats: npt.NDArray[np.int32],
    u: int,
    i: int,
    rating: float,
    rating_stats: npt.NDArray[np.float64],
    scratch: npt.NDArray[np.float64],
    user_count: int,
    item_count: int,
    hp: npt.NDArray[np.float64],
    rates: tuple[float, float, float, float, float, float],
    plain_sgd: bool,
    losses: npt.NDArray[np.float64],
) -> float:
    """A rating event: its prediction before the step (returned), the running mean, and the
    explicit step (on the rows directly when neither side has features)."""
    k = V.shape[1] - 3
    ue, ie = scratch[0], scratch[1]
    plain = not _has_features(user_feats, u) and not _has_features(item_feats, i)
    if plain:
        dot = _row_dot(U, u, V, i, k)
    else:
        effective(U, u, user_feats, FU, ue)
        effective(V, i, item_feats, FI, ie)
        dot = _dot(ue, ie, k)
    mu_before = rating_stats[0] / rating_stats[1] if rating_stats[1] > 0 else 0.0
    prediction = mu_before + U[u, k] + V[i, k] + rating_stats[2] * dot
    rating_stats[0] += rating
    rating_stats[1] += 1.0
    if rates[0] <= 0.0:
        return float(prediction)
    mu = rating_stats[0] / rating_stats[1]
    if plain:
        err, rating_stats[2] = _explicit_plain(
            U,
            V,
            u,
            i,
            rating,
            mu,
            dot,
            rating_stats[2],
            rates,
            user_count,
            item_count,
            hp,
            plain_sgd,
        )
    else:
        err = _explicit_step(
            U,
            V,
            u,
            i,
            rating,
            mu,
            rating_stats,
            ue,
            ie,
            user_feats,
            FU,
            item_feats,
            FI,
            scratch[3],
            scratch[4],
            user_count,
            item_count,
            hp,
        )
    losses[LOSS_SQUARED_ERROR] += err * err
    losses[LOSS_RATINGS] += 1.0
    return float(prediction)


@compiled
def apply_events(
    U: npt.NDArray[np.float32],
    V: npt.NDArray[np.float32],
    FU: npt.NDArray[np.float32],
    FI: npt.NDArray[np.float32],
    user_counts: npt.NDArray[np.int64],
    item_counts: npt.NDArray[np.int64],
    user_keys: npt.NDArray[np.uint64],
    user_feats: npt.NDArray[np.int32],
    item_feats: npt.NDArray[np.int32],
    recent: npt.NDArray[np.int32],
    neighbours: npt.NDArray[np.int32],
    neighbour_weights: npt.NDArray[np.float32],
    window: npt.NDArray[np.int32],
    window_position: npt.NDArray[np.int64],
    window_counts: npt.NDArray[np.int32],
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
    predictions: npt.NDArray[np.float64],
    dirty_users: npt.NDArray[np.uint8],
    dirty_items: npt.NDArray[np.uint8],
) -> int:
    """Apply events ``e = 0..n-1`` in order, one step each; return the known item count.

    Item rows must have been assigned in order of first appearance, so that an event only
    samples negatives among items that had appeared by then (``n_known_items`` counts those
    before the batch). ``rating_stats`` is [sum, count, scale]: all ratings' sum and count
    (mu is their mean, updated before the step as river does) and the rating scale s.
    ``predictions[e]`` receives each rating's prediction made before its step (with mu
    excluding it), NaN for other events. Every changed user and item row is flagged in
    ``dirty_*``; counters, losses and the session state are updated in place.
    """
    k = V.shape[1] - 3
    scratch = np.zeros((6, k + 1))
    ue, ie = scratch[0], scratch[1]
    seed_key = mix64(np.uint64(seed))
    n_known = n_known_items
    plain_sgd = hp[HP_ADAGRAD] == 0.0 and hp[HP_STEP_DECAY] == 0.0
    rates = _explicit_rates(hp)
    session_min_rating = hp[HP_SESSION_MIN_RATING]
    impressions = hp[HP_IMPRESSION_W] > 0.0
    for e in range(users.shape[0]):
        u = users[e]
        i = items[e]
        kind = kinds[e]
        n_known = max(n_known, i + 1)
        dirty_users[u] = 1
        dirty_items[i] = 1
        if kind == _RATING:
            predictions[e] = _rate(
                U,
                V,
                FU,
                FI,
                user_feats,
                item_feats,
                u,
                i,
                values[e],
                rating_stats,
                scratch,
                user_counts[u],
                item_counts[i],
                hp,
                rates,
                plain_sgd,
                losses,
            )
        else:
            predictions[e] = np.nan
        weight = positive_weight(kind, values[e], durations[e], hp)
        if weight > 0.0 and n_known > 1:
            effective(U, u, user_feats, FU, ue)
            effective(V, i, item_feats, FI, ie)
            # The user's event number keys its random draws: independent of batching.
            state = mix64(user_keys[u] ^ seed_key) ^ np.uint64(user_counts[u])
            _rank_positive(
                U,
                V,
                FU,
                FI,
                user_counts,
                item_counts,
                user_feats,
                item_feats,
                recent,
                window,
                min(window_position[0], window.shape[0]),
                u,
                i,
                weight,
                n_known,
                state,
                scratch,
                hp,
                losses,
                dirty_items,
            )
        elif kind == _IMPRESSION and impressions:
            effective(U, u, user_feats, FU, ue)
            effective(V, i, item_feats, FI, ie)
            _impression_step(
                U,
                V,
                u,
                i,
                ue,
                ie,
                user_feats,
                FU,
                item_feats,
                FI,
                scratch[3],
                scratch[4],
                user_counts[u],
                item_counts[i],
                hp,
            )
        if weight > 0.0 or (kind == _RATING and values[e] >= session_min_rating):
            _remember(
                recent,
                neighbours,
                neighbour_weights,
                window,
                window_position,
                window_counts,
                u,
                i,
                hp[HP_SESSION_DECAY],
                dirty_items,
            )
        user_counts[u] += 1
        item_counts[i] += 1
    return n_known


@compiled
def apply_ratings(
    U: npt.NDArray[np.float32],
    V: npt.NDArray[np.float32],
    user_counts: npt.NDArray[np.int64],
    item_counts: npt.NDArray[np.int64],
    users: npt.NDArray[np.int64],
    items: npt.NDArray[np.int64],
    values: npt.NDArray[np.float32],
    rating_stats: npt.NDArray[np.float64],
    hp: npt.NDArray[np.float64],
    losses: npt.NDArray[np.float64],
    predictions: npt.NDArray[np.float64],
    dirty_users: npt.NDArray[np.uint8],
    dirty_items: npt.NDArray[np.uint8],
) -> None:
    """:func:`apply_events` for a batch of ratings that are no positive and enter no
    session, by users and items without features: the explicit step alone, in a loop small
    enough for the compiler to keep in registers. The same results, bit for bit."""
    k = V.shape[1] - 3
    plain_sgd = hp[HP_ADAGRAD] == 0.0 and hp[HP_STEP_DECAY] == 0.0
    explicit = hp[HP_EXPLICIT_W] > 0.0
    rates = _explicit_rates(hp)
    # The running sums live in registers during the loop, in the arrays after it.
    total, count, scale = rating_stats[0], rating_stats[1], rating_stats[2]
    squared_error = 0.0
    stepped = 0
    for e in range(users.shape[0]):
        u = users[e]
        i = items[e]
        dirty_users[u] = 1
        dirty_items[i] = 1
        dot = _row_dot(U, u, V, i, k)
        predictions[e] = (total / count if count > 0 else 0.0) + U[u, k] + V[i, k] + scale * dot
        total += values[e]
        count += 1.0
        if explicit:
            err, scale = _explicit_plain(
                U,
                V,
                u,
                i,
                values[e],
                total / count,
                dot,
                scale,
                rates,
                user_counts[u],
                item_counts[i],
                hp,
                plain_sgd,
            )
            squared_error += err * err
            stepped += 1
        user_counts[u] += 1
        item_counts[i] += 1
    rating_stats[0], rating_stats[1], rating_stats[2] = total, count, scale
    losses[LOSS_SQUARED_ERROR] += squared_error
    losses[LOSS_RATINGS] += stepped
