"""One SGD step of each kind, on one user and one or two items (compiled helpers).

Row layouts and the hybrid's effective vectors are described in
:mod:`stream_rec.model.kernels`; the event loops that call these live there too.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from stream_rec.model._jit import compiled, inlined
from stream_rec.model.hyper import (
    EPS,
    HP_ADAGRAD,
    HP_BIAS_LR,
    HP_BIAS_REG,
    HP_CLICK_W,
    HP_DEFAULT_DURATION,
    HP_EXPLICIT_W,
    HP_FEATURE_SCALE,
    HP_IMPRESSION_W,
    HP_LR,
    HP_MIN_WATCH,
    HP_POPULAR_NEG,
    HP_POSITIVE_RATING,
    HP_RANK_BIAS_LR,
    HP_RANK_LR,
    HP_RANK_REG,
    HP_RATING_W,
    HP_RATING_W_STAR,
    HP_REG,
    HP_SCALE_LR,
    HP_STEP_DECAY,
    HP_WATCH_W,
    KIND_CLICK,
    KIND_RATING,
    KIND_WATCH,
)
from stream_rec.model.random import mix64, next_state, uniform01


@inlined
def positive_weight(
    kind: np.int8, value: float, duration: float, hp: npt.NDArray[np.float64]
) -> float:
    """Confidence of an event as a positive for ranking; 0 means not a positive."""
    if kind == KIND_CLICK:
        return float(hp[HP_CLICK_W])
    if kind == KIND_WATCH:
        length = duration if duration > 0.0 else hp[HP_DEFAULT_DURATION]
        fraction = min(max(value / length, 0.0), 1.0)
        if fraction < hp[HP_MIN_WATCH]:
            return 0.0
        return float(hp[HP_WATCH_W] * fraction)
    if kind == KIND_RATING and value >= hp[HP_POSITIVE_RATING]:
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
def step_size(
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
        step /= math.sqrt(P[row, acc_col] + EPS)
    return step


@compiled
def step_rows(
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
    own = step_size(P, row, acc_col, sq / k, lr, count, hp)
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
            feature_step = scale / math.sqrt(F[fr, f_acc] + EPS)
        for f in range(k):
            F[fr, f] -= feature_step * (grad[f] + reg * F[fr, f])


@compiled
def step_rank_bias(
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
def vector_dot(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64], k: int) -> float:
    s = 0.0
    for f in range(k):
        s += a[f] * b[f]
    return s


@compiled
def explicit_step(
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
    dot = vector_dot(ue, ie, k)
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
    step_rows(U, u, k + 1, user_feats, FU, grad_u, hp[HP_LR], hp[HP_REG], user_count, hp)
    step_rows(V, i, k + 2, item_feats, FI, grad_i, hp[HP_LR], hp[HP_REG], item_count, hp)
    return float(err)


@inlined
def row_dot(
    U: npt.NDArray[np.float32], u: int, V: npt.NDArray[np.float32], i: int, k: int
) -> float:
    """p_u . q_i on the rows, with a float32 accumulator (SIMD on the rows' own type)."""
    acc = np.float32(0.0)
    for f in range(k):
        acc += U[u, f] * V[i, f]
    return float(acc)


@inlined
def explicit_rates(hp: npt.NDArray[np.float64]) -> tuple[float, float, float, float, float, float]:
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
def explicit_plain(
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
    """:func:`explicit_step` for a user and an item without features, on their rows
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
        step_u = step_size(U, u, k + 1, gs * gs * qq / k, lr, user_count, hp)
        step_i = step_size(V, i, k + 2, gs * gs * pp / k, lr, item_count, hp)
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
def has_features(feats: npt.NDArray[np.int32], row: int) -> bool:
    return bool(feats.shape[1] > 0 and feats[row, 0] >= 0)


@compiled
def draw_negative(
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
def bpr_step(
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
    x = vector_dot(ue, ie, k) + V[i, k + 1] + ie[k] - vector_dot(ue, je, k) - V[j, k + 1] - je[k]
    x = min(max(x, -30.0), 30.0)
    # d(-log sigma(x))/dx = -sigma(-x): the step shrinks as the pair gets ordered.
    g = weight / (1.0 + math.exp(x))
    for f in range(k):
        grad_u[f] = -g * (ie[f] - je[f])
        grad_i[f] = -g * ue[f]
        grad_j[f] = g * ue[f]
    lr = hp[HP_RANK_LR]
    reg = hp[HP_RANK_REG]
    step_rows(U, u, k + 1, user_feats, FU, grad_u, lr, reg, counts[0], hp)
    step_rows(V, i, k + 2, item_feats, FI, grad_i, lr, reg, counts[1], hp)
    step_rows(V, j, k + 2, item_feats, FI, grad_j, lr, reg, counts[2], hp)
    step_rank_bias(V, i, item_feats, FI, -g, hp[HP_RANK_BIAS_LR], hp)
    step_rank_bias(V, j, item_feats, FI, g, hp[HP_RANK_BIAS_LR], hp)
    return weight * math.log1p(math.exp(-x))


@compiled
def impression_step(
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
    s = min(max(vector_dot(ue, ie, k) + V[i, k + 1] + ie[k], -30.0), 30.0)
    g = hp[HP_IMPRESSION_W] / (1.0 + math.exp(-s))  # w * sigma(s)
    for f in range(k):
        grad_u[f] = g * ie[f]
        grad_i[f] = g * ue[f]
    lr = hp[HP_RANK_LR]
    reg = hp[HP_RANK_REG]
    step_rows(U, u, k + 1, user_feats, FU, grad_u, lr, reg, user_count, hp)
    step_rows(V, i, k + 2, item_feats, FI, grad_i, lr, reg, item_count, hp)
    step_rank_bias(V, i, item_feats, FI, g, hp[HP_RANK_BIAS_LR], hp)


@compiled
def hardest_negative(
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
        j = draw_negative(state, n_known, window, filled, hp[HP_POPULAR_NEG])
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
        score = vector_dot(ue, je, k) + V[j, k + 1] + je[k]
        if score > best_score:
            best_score = score
            best = j
    return best


@compiled
def effective_rows(
    P: npt.NDArray[np.float32],
    rows: npt.NDArray[np.int64],
    feats: npt.NDArray[np.int32],
    F: npt.NDArray[np.float32],
    bias_col: int,
    feature_bias_col: int,
    out: npt.NDArray[np.float32],
    out_bias: npt.NDArray[np.float32],
) -> None:
    """out[r] = own vector + mean feature vector; out_bias[r] = own + mean feature bias."""
    k = out.shape[1]
    for r in range(rows.shape[0]):
        row = rows[r]
        for f in range(k):
            out[r, f] = P[row, f]
        out_bias[r] = P[row, bias_col] if bias_col >= 0 else 0.0
        n = 0
        for t in range(feats.shape[1]):
            if feats[row, t] < 0:
                break
            n += 1
        for t in range(n):
            fr = feats[row, t]
            for f in range(k):
                out[r, f] += F[fr, f] / n
            if feature_bias_col >= 0:
                out_bias[r] += F[fr, feature_bias_col] / n
