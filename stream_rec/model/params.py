"""The model's hyper-parameters: one frozen dataclass, validated at the settings edge.

The fields carry `annotated_types` bounds, which pydantic-settings checks when it reads
``STREAM_REC_MODEL__<FIELD>`` (see :mod:`stream_rec.config`); the model itself never
imports pydantic. Defaults were tuned on ml-latest-small only (prequential, see README).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from annotated_types import Ge, Gt, Interval, Le


@dataclass(frozen=True)
class ModelParams:
    """Hyper-parameters of :class:`stream_rec.model.HybridModel`.

    Changing ``factors``, ``max_features``, ``context_slots``, ``session_length`` or
    ``neighbours`` changes the shape of the stored state: start such a model under a new
    Redis key prefix.
    """

    # --- factors ------------------------------------------------------------------------
    factors: Annotated[int, Interval(ge=1, le=512)] = 32
    """k, the number of latent dimensions of every user, item and feature vector."""

    init_std: Annotated[float, Ge(0.0), Le(1.0)] = 0.05
    """Standard deviation of the normal draw that initialises a new vector."""

    seed: Annotated[int, Ge(0)] = 42
    """Seeds vector initialisation and negative sampling (results are reproducible)."""

    optimizer: Literal["sgd", "adagrad"] = "sgd"
    """``sgd``: plain steps (with the explicit objective alone these are exactly river's
    ``reco.BiasedMF`` equations); ``adagrad``: each latent row's step is divided by the
    root of its accumulated squared gradients (row-wise AdaGrad)."""

    step_decay_events: Annotated[float, Ge(0.0)] = 0.0
    """Per-entity step decay: an entity's latent step is scaled by
    1/sqrt(1 + n/step_decay_events) after n of its events; 0 turns it off."""

    # --- explicit objective (ratings) ---------------------------------------------------
    learning_rate: Annotated[float, Gt(0.0), Le(1.0)] = 0.07
    """Step size for latent vectors on ratings: the squared error (r - mu - b_u - b_i -
    p.q)^2 has gradient 2(pred - r), as in river."""

    bias_learning_rate: Annotated[float, Ge(0.0), Le(1.0)] = 0.025
    """Step size for the rating biases b_u and b_i."""

    regularization: Annotated[float, Ge(0.0), Le(1.0)] = 0.0
    """L2 on latent vectors, added to their gradient at every rating step."""

    bias_regularization: Annotated[float, Ge(0.0), Le(1.0)] = 0.0
    """L2 on the rating biases."""

    rating_scale_learning_rate: Annotated[float, Ge(0.0), Le(1.0)] = 0.003
    """Ratings are predicted as mu + b_u + b_i + s p.q, with one global scale s (starting
    at 1) learned at this rate, so that the ranking objective may grow p.q without
    skewing predicted ratings. 0 keeps s = 1 (river's equations exactly)."""

    explicit_weight: Annotated[float, Ge(0.0)] = 1.0
    """Scale of the rating step (0 turns the explicit objective off)."""

    # --- implicit objective (positives) -------------------------------------------------
    ranking_learning_rate: Annotated[float, Gt(0.0), Le(2.0)] = 0.01
    """Step size for latent vectors on positives (the BPR ranking objective)."""

    ranking_bias_learning_rate: Annotated[float, Ge(0.0), Le(1.0)] = 0.01
    """Step size for each item's ranking bias c_i (a learned popularity prior)."""

    ranking_regularization: Annotated[float, Ge(0.0), Le(1.0)] = 0.005
    """L2 on latent vectors at every ranking step."""

    negatives: Annotated[int, Interval(ge=1, le=256)] = 32
    """Candidate negatives sampled per positive; the highest-scored one is stepped
    (adaptive sampling: a harder negative teaches more than a random one)."""

    negative_steps: Literal["hardest", "each"] = "each"
    """``hardest``: one BPR step against the highest-scored candidate; ``each``: one BPR
    step against every sampled candidate (more learning per positive, slower)."""

    popular_negatives: Annotated[float, Ge(0.0), Le(1.0)] = 0.0
    """Share of candidate negatives drawn by recent popularity (from the window below)
    rather than uniformly: popular items the user skipped are informative negatives."""

    click_weight: Annotated[float, Ge(0.0)] = 1.0
    """Confidence of a click as a positive."""

    watch_weight: Annotated[float, Ge(0.0)] = 1.5
    """Confidence of a full watch; a watch counts with this times its watched fraction."""

    min_watch_fraction: Annotated[float, Ge(0.0), Le(1.0)] = 0.1
    """A watch shorter than this fraction of the item is not a positive."""

    default_duration_seconds: Annotated[float, Gt(0.0)] = 600.0
    """Item duration assumed when a watch event carries none."""

    rating_weight: Annotated[float, Ge(0.0)] = 1.0
    """Confidence of a rating >= ``positive_rating`` as a positive; each star above
    the threshold adds ``rating_weight_per_star``."""

    rating_weight_per_star: Annotated[float, Ge(0.0)] = 0.0
    """Extra confidence per rating point above ``positive_rating``."""

    positive_rating: float = 4.0
    """Ratings at or above this count as positives for ranking."""

    impression_weight: Annotated[float, Ge(0.0)] = 0.05
    """Weight of an impression as a weak negative (a logistic push down of its score)."""

    # --- hybrid features ----------------------------------------------------------------
    max_features: Annotated[int, Interval(ge=0, le=128)] = 24
    """At most this many feature tokens per user or item (the rest are ignored)."""

    feature_learning_rate_scale: Annotated[float, Ge(0.0), Le(1.0)] = 0.3
    """Feature embeddings are shared by many entities and get many more steps than one
    entity's own vector: their step is the entity's step times this."""

    segment_items: Annotated[int, Interval(ge=0, le=1000)] = 50
    """Items remembered per user feature (its segment: users aged 25-34, users in de ...)
    as the segment's recent popularity, by Space-Saving; 0 keeps none."""

    segment_decay: Annotated[float, Gt(0.0), Le(1.0)] = 0.999
    """A segment's item weights are multiplied by this at each of its positives (recency:
    the weight of a positive halves after about 0.7/(1 - decay) newer ones)."""

    min_feature_events: Annotated[int, Ge(0)] = 50
    """A user without events is scored by its feature embeddings once one of its features
    has been behind this many positives; before that, by its segments' recent popularity
    (by global recent popularity if they have none)."""

    # --- context --------------------------------------------------------------------------
    context_slots: Annotated[int, Interval(ge=0, le=16)] = 4
    """At most this many context values per event (its ``context`` keys in name order,
    then the hour band); each has an embedding that joins the user's features for that
    event's steps and lists. 0 ignores context."""

    max_context_values: Annotated[int, Interval(ge=0, le=1_000_000)] = 1_024
    """Distinct context values (``device=tv``, ``hour=18-23`` ...) the model learns; a
    value first seen beyond this many is ignored (and counted), which bounds memory."""

    hour_context_bands: Literal[0, 1, 2, 3, 4, 6, 8, 12, 24] = 0
    """Split the UTC day into this many equal bands and give every event its band as a
    context value (4: ``hour=0-5`` ... ``hour=18-23``); 0 derives nothing from the time."""

    # --- session signal -----------------------------------------------------------------
    session_length: Annotated[int, Interval(ge=0, le=64)] = 10
    """How many of a user's latest positives form the session query (0 turns it off)."""

    session_decay: Annotated[float, Gt(0.0), Le(1.0)] = 0.8
    """Weight of the l-th latest positive, as session_decay**l, in updates and queries."""

    session_min_rating: float = 0.0
    """Ratings at or above this enter the session memory (clicks and positive watches
    always do); below ``positive_rating``, a rating tells what was taken together even
    where it was not liked."""

    neighbours: Annotated[int, Interval(ge=1, le=1000)] = 200
    """Co-visitation neighbours kept per item (Space-Saving: a new one replaces the
    weakest), so memory stays O(items x neighbours)."""

    popularity_exponent: Annotated[float, Ge(0.0), Le(2.0)] = 0.3
    """Session scores divide by popularity**this, so popular items do not dominate."""

    session_weight: Annotated[float, Ge(0.0)] = 0.5
    """Weight of the session score against the factor score, both z-scored per user."""

    popularity_window: Annotated[int, Interval(ge=16, le=10_000_000)] = 10_000
    """The latest positives kept to estimate recent popularity (cold lists, negatives)."""

    # --- lists --------------------------------------------------------------------------
    max_seen_items: Annotated[int, Interval(ge=1, le=1_000_000)] = 1_000
    """Items remembered per user as consumed (excluded from its lists); beyond this the
    oldest are forgotten, which bounds memory in the process and in Redis."""

    top_k: Annotated[int, Interval(ge=1, le=1000)] = 10
    """Length of every published recommendation list."""
