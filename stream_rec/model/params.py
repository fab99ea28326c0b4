"""The model's hyper-parameters: one frozen dataclass, validated at the settings edge.

The fields carry `annotated_types` bounds, which pydantic-settings checks when it reads
``STREAM_REC_MODEL__<FIELD>`` (see :mod:`stream_rec.config`); the model itself never
imports pydantic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from annotated_types import Ge, Gt, Interval, Le


@dataclass(frozen=True)
class ModelParams:
    """Hyper-parameters of :class:`stream_rec.model.StreamingMF`.

    Changing ``factors`` changes the shape of the stored state: start such a model under
    a new Redis key prefix.
    """

    factors: Annotated[int, Interval(ge=1, le=512)] = 32
    """k, the number of latent dimensions of every user and item vector."""

    init_std: Annotated[float, Ge(0.0), Le(1.0)] = 0.1
    """Standard deviation of the normal draw that initialises a new vector."""

    seed: Annotated[int, Ge(0)] = 42
    """Seeds vector initialisation and negative sampling (results are reproducible)."""

    learning_rate: Annotated[float, Gt(0.0), Le(1.0)] = 0.05
    """SGD step size for latent factors on ratings (the squared-error objective)."""

    ranking_learning_rate: Annotated[float, Gt(0.0), Le(2.0)] = 0.2
    """SGD step size for latent factors on positives (the ranking objective). Larger than
    the explicit one: a BPR gradient is at most the event's weight, a rating error is not."""

    bias_learning_rate: Annotated[float, Ge(0.0), Le(1.0)] = 0.01
    """SGD step size for the user and item biases."""

    regularization: Annotated[float, Ge(0.0), Le(1.0)] = 0.01
    """L2 penalty on latent factors, applied at every step that touches a vector."""

    bias_regularization: Annotated[float, Ge(0.0), Le(1.0)] = 0.01
    """L2 penalty on biases."""

    negatives: Annotated[int, Interval(ge=1, le=256)] = 8
    """Candidate negatives sampled per positive; the highest-scored one is stepped
    (adaptive sampling: a harder negative teaches more than a random one)."""

    click_weight: Annotated[float, Ge(0.0)] = 1.0
    """Confidence of a click as a positive in the ranking loss."""

    watch_weight: Annotated[float, Ge(0.0)] = 1.0
    """Confidence of a watch, multiplied by its watch fraction (0..1)."""

    min_watch_fraction: Annotated[float, Ge(0.0), Le(1.0)] = 0.1
    """A watch shorter than this fraction of the item is not a positive."""

    default_duration_seconds: Annotated[float, Gt(0.0)] = 600.0
    """Item duration assumed when a watch event carries none."""

    rating_weight: Annotated[float, Ge(0.0)] = 1.0
    """Confidence of a rating >= ``positive_rating`` as a positive in the ranking loss."""

    positive_rating: float = 4.0
    """Ratings at or above this count as positives for ranking."""

    explicit_weight: Annotated[float, Ge(0.0)] = 1.0
    """Scale of the squared-error step taken on ratings (0 turns it off)."""

    top_k: Annotated[int, Interval(ge=1, le=1000)] = 10
    """Length of every published recommendation list."""
