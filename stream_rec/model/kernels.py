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

import numpy as np
import numpy.typing as npt

from stream_rec.model._jit import compiled
from stream_rec.model.hyper import (
    HP_ADAGRAD,
    HP_EACH_NEGATIVE,
    HP_EXPLICIT_W,
    HP_IMPRESSION_W,
    HP_NEGATIVES,
    HP_SEGMENT_DECAY,
    HP_SESSION_DECAY,
    HP_SESSION_MIN_RATING,
    HP_STEP_DECAY,
    KIND_IMPRESSION,
    KIND_RATING,
    LOSS_POSITIVES,
    LOSS_RANKING,
    LOSS_RATINGS,
    LOSS_SQUARED_ERROR,
)
from stream_rec.model.random import mix64, next_state
from stream_rec.model.session import covisit, push_recent, push_window
from stream_rec.model.steps import (
    bpr_step,
    effective,
    explicit_plain,
    explicit_rates,
    explicit_step,
    hardest_negative,
    has_features,
    impression_step,
    positive_weight,
    row_dot,
    vector_dot,
)


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
        j = hardest_negative(
            U, V, FI, item_feats, u, i, ue, je, recent, n_known, window, filled, state, hp, draws
        )
        if j < 0:
            continue
        effective(V, j, item_feats, FI, je)
        counts[0] = user_counts[u]
        counts[1] = item_counts[i]
        counts[2] = item_counts[j]
        losses[LOSS_RANKING] += bpr_step(
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
    plain = not has_features(user_feats, u) and not has_features(item_feats, i)
    if plain:
        dot = row_dot(U, u, V, i, k)
    else:
        effective(U, u, user_feats, FU, ue)
        effective(V, i, item_feats, FI, ie)
        dot = vector_dot(ue, ie, k)
    mu_before = rating_stats[0] / rating_stats[1] if rating_stats[1] > 0 else 0.0
    prediction = mu_before + U[u, k] + V[i, k] + rating_stats[2] * dot
    rating_stats[0] += rating
    rating_stats[1] += 1.0
    if rates[0] <= 0.0:
        return float(prediction)
    mu = rating_stats[0] / rating_stats[1]
    if plain:
        err, rating_stats[2] = explicit_plain(
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
        err = explicit_step(
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
    feature_counts: npt.NDArray[np.int64],
    segment_items: npt.NDArray[np.int32],
    segment_weights: npt.NDArray[np.float32],
    recent: npt.NDArray[np.int32],
    neighbours: npt.NDArray[np.int32],
    neighbour_weights: npt.NDArray[np.float32],
    item_durations: npt.NDArray[np.float32],
    window: npt.NDArray[np.int32],
    window_position: npt.NDArray[np.int64],
    window_counts: npt.NDArray[np.int32],
    users: npt.NDArray[np.int64],
    items: npt.NDArray[np.int64],
    kinds: npt.NDArray[np.int8],
    values: npt.NDArray[np.float32],
    durations: npt.NDArray[np.float32],
    contexts: npt.NDArray[np.int32],
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

    Each positive counts for every user feature (``feature_counts``) and enters each
    feature's segment popularity (``segment_*``, decayed per positive).

    ``contexts[e]`` (-1 padded) are user-feature rows of event e's context values: for
    that event they join the user's features (its free slots after ``max_features``), so
    they are learned as features are, and leave again after the event.
    """
    k = V.shape[1] - 3
    scratch = np.zeros((6, k + 1))
    ue, ie = scratch[0], scratch[1]
    seed_key = mix64(np.uint64(seed))
    n_known = n_known_items
    plain_sgd = hp[HP_ADAGRAD] == 0.0 and hp[HP_STEP_DECAY] == 0.0
    rates = explicit_rates(hp)
    session_min_rating = hp[HP_SESSION_MIN_RATING]
    impressions = hp[HP_IMPRESSION_W] > 0.0
    for e in range(users.shape[0]):
        u = users[e]
        i = items[e]
        kind = kinds[e]
        n_known = max(n_known, i + 1)
        dirty_users[u] = 1
        dirty_items[i] = 1
        first_slot, n_context = _enter_context(user_feats, u, contexts, e)
        if kind == KIND_RATING:
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
        # A watch without its own duration takes the one from the item's metadata.
        duration = durations[e] if durations[e] > 0.0 else item_durations[i, 0]
        weight = positive_weight(kind, values[e], duration, hp)
        if weight > 0.0:
            _count_segments(user_feats, u, i, feature_counts, segment_items, segment_weights, hp)
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
        elif kind == KIND_IMPRESSION and impressions:
            effective(U, u, user_feats, FU, ue)
            effective(V, i, item_feats, FI, ie)
            impression_step(
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
        if weight > 0.0 or (kind == KIND_RATING and values[e] >= session_min_rating):
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
        for t in range(n_context):
            user_feats[u, first_slot + t] = -1
        user_counts[u] += 1
        item_counts[i] += 1
    return n_known


@compiled
def _count_segments(
    user_feats: npt.NDArray[np.int32],
    u: int,
    i: int,
    feature_counts: npt.NDArray[np.int64],
    segment_items: npt.NDArray[np.int32],
    segment_weights: npt.NDArray[np.float32],
    hp: npt.NDArray[np.float64],
) -> None:
    """A positive of user u on item i, for each of u's features: its count, and item i
    into its segment's decayed popularity."""
    decay = hp[HP_SEGMENT_DECAY]
    width = segment_items.shape[1]
    for t in range(user_feats.shape[1]):
        f = user_feats[u, t]
        if f < 0:
            break
        feature_counts[f] += 1
        if width == 0:
            continue
        for s in range(width):
            segment_weights[f, s] *= decay
        covisit(segment_items, segment_weights, f, i, 1.0)


@compiled
def _enter_context(
    user_feats: npt.NDArray[np.int32], u: int, contexts: npt.NDArray[np.int32], e: int
) -> tuple[int, int]:
    """Write event e's context rows into user u's free feature slots; returns (first
    slot, how many), for the caller to clear after the event."""
    first = 0
    while first < user_feats.shape[1] and user_feats[u, first] >= 0:
        first += 1
    n = 0
    for t in range(contexts.shape[1]):
        if contexts[e, t] < 0 or first + n >= user_feats.shape[1]:
            break
        user_feats[u, first + n] = contexts[e, t]
        n += 1
    return first, n


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
    rates = explicit_rates(hp)
    # The running sums live in registers during the loop, in the arrays after it.
    total, count, scale = rating_stats[0], rating_stats[1], rating_stats[2]
    squared_error = 0.0
    stepped = 0
    for e in range(users.shape[0]):
        u = users[e]
        i = items[e]
        dirty_users[u] = 1
        dirty_items[i] = 1
        dot = row_dot(U, u, V, i, k)
        predictions[e] = (total / count if count > 0 else 0.0) + U[u, k] + V[i, k] + scale * dot
        total += values[e]
        count += 1.0
        if explicit:
            err, scale = explicit_plain(
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
