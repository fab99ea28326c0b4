"""The hyper-parameter vector the kernels read, the loss accumulator and event codes.

:func:`hyper_vector` turns :class:`~stream_rec.model.params.ModelParams` into one float64
array (numba compiles one kernel for any parameter values); the ``HP_*`` names are its
positions.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from stream_rec.model.batch import EventKind
from stream_rec.model.params import ModelParams

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
HP_SEGMENT_DECAY = 25
HP_SIZE = 26

# Positions in the loss accumulator.
LOSS_SQUARED_ERROR = 0
LOSS_RATINGS = 1
LOSS_RANKING = 2
LOSS_POSITIVES = 3
LOSS_SIZE = 4

KIND_IMPRESSION = np.int8(EventKind.IMPRESSION)
KIND_CLICK = np.int8(EventKind.CLICK)
KIND_WATCH = np.int8(EventKind.WATCH)
KIND_RATING = np.int8(EventKind.RATING)
EPS = 1e-8


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
    hp[HP_SEGMENT_DECAY] = params.segment_decay
    return hp
