"""The model's quality targets on ml-latest-small, as a regression test.

Prequential, every 10th novel positive, the whole dataset (100,836 ratings). Measured
with the defaults (see README): stream_rec RMSE 0.849 (river BiasedMF 0.865), recall@10
0.152 (popularity 0.070: 2.16x), cold-user recall@10 0.383 with features (genres, decade,
tags as they were applied), 0.376 without.
The run is complete and deterministic, so the targets are checked as the issue states
them, without extra margins.
"""

from __future__ import annotations

import pytest

from stream_rec.evaluation.locate import dataset_path
from stream_rec.evaluation.prequential import EvaluationProtocol
from stream_rec.evaluation.run import run_evaluation
from stream_rec.model import ModelParams

ML_SMALL = dataset_path("ml-latest-small")


@pytest.mark.skipif(
    ML_SMALL is None, reason="ml-latest-small is not on this machine (STREAM_REC_DATA_DIR)"
)
def test_targets_on_ml_latest_small() -> None:
    assert ML_SMALL is not None
    result = run_evaluation(
        ML_SMALL,
        "movielens-csv",
        EvaluationProtocol(every=10),
        ModelParams(),
        ("stream_rec", "stream_rec_no_features", "popularity", "river_biasedmf"),
    )
    figures = {name: report.as_json() for name, report in result.reports.items()}
    ours, river, popularity = (
        figures["stream_rec"],
        figures["river_biasedmf"],
        figures["popularity"],
    )
    print({name: (f["rmse"], f["recall@10"], f["cold_recall@10"]) for name, f in figures.items()})
    assert ours["rmse"] <= river["rmse"]
    assert ours["rmse"] <= 0.85
    assert ours["recall@10"] >= 2.0 * popularity["recall@10"]
    assert ours["cold_recall@10"] > figures["stream_rec_no_features"]["cold_recall@10"]
