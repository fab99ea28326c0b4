"""`stream-rec evaluate` on an ml-100k-style folder with a planted demographic effect:
cold users' recall@10 with demographics beats the same model without them."""

from __future__ import annotations

from pathlib import Path

from stream_rec.evaluation.prequential import EvaluationProtocol
from stream_rec.evaluation.run import run_evaluation
from stream_rec.evaluation.synthetic import SyntheticWorld, write_movielens_100k
from stream_rec.model import ModelParams


def test_demographics_raise_cold_user_recall_on_ml_100k_style_data(tmp_path: Path) -> None:
    world = SyntheticWorld.create(n_users=2_000, n_items=400, seed=11, segment_strength=1.0)
    ratings = write_movielens_100k(world, tmp_path / "ml-100k", 200_000)
    result = run_evaluation(
        tmp_path / "ml-100k" / "u.data",
        "movielens-100k",
        EvaluationProtocol(every=1),
        ModelParams(),
        names=("stream_rec", "stream_rec_no_demographics", "popularity"),
    )
    cold = {name: report.cold_recall for name, report in result.reports.items()}
    queries = result.reports["stream_rec"].cold_queries
    print(f"{ratings} ratings, {queries} cold queries; cold recall@10: {cold}")
    assert queries >= 500
    with_demographics, without = cold["stream_rec"], cold["stream_rec_no_demographics"]
    assert with_demographics is not None and without is not None
    assert with_demographics > without * 1.1
