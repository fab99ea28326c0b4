"""stream-rec's model behind river's ``reco.base.Ranker`` interface.

river users can run it where they run ``reco.BiasedMF``::

    model = StreamRecRanker()
    for x, y in dataset:                      # x = {"user": ..., "item": ...}
        y_pred = model.predict_one(**x)
        model.learn_one(**x, y=y)

and in ``river.evaluate.progressive_val_score(dataset, model, metrics.RMSE())``, which
passes ``x`` as one dict (both call styles are accepted). ``y`` is a rating (a number),
or a click (True) / an impression without a click (False). ``rank`` orders items by
the same blended score that orders the published lists.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from river import base, reco

from stream_rec.model import EventKind, HybridModel, InteractionBatch, ModelParams


class StreamRecRanker(reco.base.Ranker, base.Regressor):
    """A :class:`~stream_rec.model.HybridModel` learning one event per ``learn_one``."""

    def __init__(self, params: ModelParams | None = None, seed: int | None = None) -> None:
        super().__init__(seed=seed)
        self.params = params if params is not None else ModelParams()
        self.model = HybridModel(self.params)

    @property
    def _supervised(self) -> bool:
        return True

    # Both river call styles are accepted - Ranker's (user, item, y) and the (x, y) of
    # progressive_val_score - so the signatures differ from each base's on purpose.
    def learn_one(  # type: ignore[override]
        self, user: Any, item: Any = None, y: Any = None, x: dict[str, Any] | None = None
    ) -> None:
        user_id, item_id, reward = _unpack(user, item, y)
        if isinstance(reward, bool):
            kind, value = (EventKind.CLICK, 1.0) if reward else (EventKind.IMPRESSION, 0.0)
        else:
            kind, value = EventKind.RATING, float(reward)
        self.model.apply(InteractionBatch.from_columns([user_id], [item_id], [kind], [value]))

    def predict_one(  # type: ignore[override]
        self, user: Any, item: Any = None, x: dict[str, Any] | None = None
    ) -> float:
        user_id, item_id, _ = _unpack(user, item, None)
        return self.model.predict_rating(user_id, item_id)

    def rank(
        self, user: Hashable, items: set[Hashable], x: dict[str, Any] | None = None
    ) -> list[Hashable]:
        ordered = sorted(items, key=str)
        scores = self.model.score_items(str(user), [str(i) for i in ordered])
        pairs = sorted(zip(ordered, scores.tolist(), strict=True), key=lambda p: -p[1])
        return [item for item, _ in pairs]


def _unpack(user: Any, item: Any, y: Any) -> tuple[str, str, Any]:
    """(user, item, y) from either river call style: (user, item, y) or (x_dict, y)."""
    if isinstance(user, dict):
        return str(user["user"]), str(user["item"]), item
    return str(user), str(item), y
