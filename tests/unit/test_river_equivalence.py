"""With the explicit objective alone and plain SGD, the model is river's reco.BiasedMF."""

from __future__ import annotations

import numpy as np
from river import optim, reco

from stream_rec.evaluation.synthetic import SyntheticWorld
from stream_rec.model import EventKind, HybridModel, InteractionBatch, ModelParams

K = 10
RIVER_MODE = ModelParams(
    factors=K,
    learning_rate=0.05,
    bias_learning_rate=0.025,
    regularization=0.0,
    bias_regularization=0.0,
    rating_scale_learning_rate=0.0,
    explicit_weight=1.0,
    rating_weight=0.0,
    session_length=0,
    max_features=0,
    optimizer="sgd",
)


def _ratings(n: int) -> list[tuple[str, str, float]]:
    world = SyntheticWorld.create(n_users=120, n_items=150, seed=21)
    events = []
    rng = np.random.default_rng(5)
    for e in world.events(n * 3):
        if len(events) == n:
            break
        if e["type"] in ("click", "watch", "rating"):
            events.append((e["user_id"], e["item_id"], float(rng.integers(1, 11)) / 2))
    return events


def test_predictions_equal_rivers_on_the_same_stream_order_and_initial_vectors() -> None:
    ratings = _ratings(6_000)
    river = reco.BiasedMF(
        n_factors=K,
        bias_optimizer=optim.SGD(0.025),
        latent_optimizer=optim.SGD(0.05),
        latent_initializer=optim.initializers.Normal(mu=0.0, sigma=0.1, seed=7),
    )
    ours = HybridModel(RIVER_MODE)
    # The same initial vectors: materialise river's, copy them into our rows.
    for user in dict.fromkeys(u for u, _, _ in ratings):
        row = ours.users.rows_for([user])[0]
        ours.users.rows[row, :K] = river.u_latents[user]
    for item in dict.fromkeys(i for _, i, _ in ratings):
        row = ours.items.rows_for([item])[0]
        ours.items.rows[row, :K] = river.i_latents[item]

    expected = []
    for user, item, y in ratings:
        expected.append(river.predict_one(user, item))
        river.learn_one(user, item, y)
    batch = InteractionBatch.from_columns(
        [u for u, _, _ in ratings],
        [i for _, i, _ in ratings],
        [EventKind.RATING] * len(ratings),
        [y for _, _, y in ratings],
    )
    got = ours.apply(batch).predictions
    difference = np.abs(got - np.asarray(expected))
    print(f"largest difference from river over {len(ratings)} predictions: {difference.max():.1e}")
    assert difference.max() < 1e-4
    # And the state after the stream, for a few pairs.
    for user, item, _ in ratings[-20:]:
        assert abs(ours.predict_rating(user, item) - river.predict_one(user, item)) < 1e-4
