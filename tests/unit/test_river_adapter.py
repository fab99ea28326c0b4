"""The river adapter runs where river's recommenders run."""

from __future__ import annotations

from river import evaluate, metrics

from stream_rec.evaluation.river_adapter import StreamRecRanker
from stream_rec.model import ModelParams


def _dataset() -> list[tuple[dict[str, str], float]]:
    rows = []
    for n in range(600):
        user = f"u{n % 30}"
        item = f"i{(n * 7) % 40}"
        rows.append(
            ({"user": user, "item": item}, 5.0 if (n % 30) % 2 == (n * 7) % 40 % 2 else 1.0)
        )
    return rows


def test_progressive_val_score_runs_and_learns() -> None:
    dataset = _dataset()
    fresh = StreamRecRanker(ModelParams(factors=8, negatives=4))
    rmse = evaluate.progressive_val_score(dataset, fresh, metrics.RMSE())
    assert 0.0 < rmse.get() < 2.0  # the ratings are 1 or 5: always predicting 3 would give 2.0


def test_river_call_style_and_rank() -> None:
    model = StreamRecRanker(ModelParams(factors=8, negatives=4, session_weight=0.0))
    for x, y in _dataset():
        model.predict_one(**x)
        model.learn_one(**x, y=y)
    model.learn_one(user="u0", item="i1", y=True)  # a click
    model.learn_one(user="u0", item="i3", y=False)  # an impression without a click
    ranked = model.rank("u1", {"i0", "i1", "i2", "i3", "unknown"})
    assert set(ranked) == {"i0", "i1", "i2", "i3", "unknown"}
    assert ranked[-1] == "unknown"
    # u1 rated the odd items 5: they come first.
    assert set(ranked[:2]) == {"i1", "i3"}
