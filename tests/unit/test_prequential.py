"""The prequential protocol on streams small enough to check by hand."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import numpy.typing as npt
import orjson
import pytest

from stream_rec.cli import main
from stream_rec.evaluation.movielens import load_side_info
from stream_rec.evaluation.prequential import EvaluationProtocol, evaluate, query_positions
from stream_rec.model import EventKind, InteractionBatch

R = EventKind.RATING


def _stream(rows: list[tuple[str, str, float]]) -> InteractionBatch:
    return InteractionBatch.from_columns(
        [u for u, _, _ in rows],
        [i for _, i, _ in rows],
        [R] * len(rows),
        [r for _, _, r in rows],
        timestamps=list(range(len(rows))),
    )


class Scripted:
    """Recommends a fixed list and predicts 3.0: the figures can be worked out by hand."""

    name = "scripted"

    def __init__(self, listing: list[str]) -> None:
        self.listing = listing
        self.learned = 0

    def learn(self, events: InteractionBatch) -> npt.NDArray[np.float64]:
        self.learned += len(events)
        return np.full(len(events), 3.0)

    def recommend(self, user_id: str, k: int) -> list[str]:
        return self.listing[:k]


def test_queries_are_every_nth_novel_positive() -> None:
    stream = _stream(
        [("u", "a", 5), ("u", "a", 5), ("u", "b", 2), ("u", "c", 4), ("v", "a", 4), ("u", "d", 5)]
    )
    # Novel positives: 0 (u,a), 3 (u,c), 4 (v,a), 5 (u,d); (u,a) again is not novel,
    # and 2 is not a positive.
    assert query_positions(stream, EvaluationProtocol(every=1)) == [0, 3, 4, 5]
    assert query_positions(stream, EvaluationProtocol(every=2)) == [0, 4]


def test_figures_by_hand() -> None:
    stream = _stream([("u", "a", 5), ("u", "c", 4), ("v", "b", 4), ("v", "x", 1)])
    model = Scripted(["c", "b", "a"])
    report = evaluate(
        model,
        stream,
        EvaluationProtocol(every=1, k=2),
        {"a": frozenset({"g1"}), "b": frozenset({"g1", "g2"}), "c": frozenset({"g2"})},
    )
    # Queries at 0 (a: not in [c, b]), 1 (c: rank 0), 2 (b: rank 1).
    assert report.queries == 3
    assert report.recall == pytest.approx(2 / 3)
    assert report.ndcg == pytest.approx((1 + 1 / math.log2(3)) / 3)
    assert report.mae == pytest.approx(np.mean([2, 1, 1, 2]))
    assert report.rmse == pytest.approx(math.sqrt(np.mean([4, 1, 1, 4])))
    assert report.coverage == pytest.approx(2 / 4)  # c and b of a, b, c, x
    assert report.diversity == pytest.approx(1 - 0.5)  # Jaccard({g2}, {g1, g2}) = 0.5
    assert report.cold_queries == 3 and report.cold_recall == pytest.approx(2 / 3)
    assert model.learned == 4  # every event learned exactly once


def test_movielens_100k_side_files_give_demographics(tmp_path: Path) -> None:
    (tmp_path / "u.user").write_text("1|24|M|technician|85711\n2|53|F|other|94043\n")
    flags = ["0"] * 19
    flags[8] = "1"  # Drama
    (tmp_path / "u.item").write_text(
        "10|Some Film (1995)|01-Jan-1995||http://x|" + "|".join(flags) + "\n"
    )
    side = load_side_info(tmp_path, "movielens-100k")
    assert side.user_features["1"] == ["age=18-24", "gender=M", "occupation=technician"]
    assert side.user_features["2"][0] == "age=45-55"
    assert side.item_features["10"] == ["genre=Drama", "decade=1990s"]
    assert side.item_genres["10"] == frozenset({"Drama"})


def test_evaluate_command_writes_json_and_a_plot(tmp_path: Path) -> None:
    from stream_rec.evaluation.synthetic import SyntheticWorld

    lines = [orjson.dumps(e) for e in SyntheticWorld.create(40, 60, seed=2).events(3_000)]
    lines.insert(10, b"not an event")
    data = tmp_path / "events.jsonl"
    data.write_bytes(b"\n".join(lines) + b"\n")
    out, png = tmp_path / "eval.json", tmp_path / "eval.png"
    code = main(
        [
            "evaluate",
            "--data",
            str(data),
            "--format",
            "jsonl",
            "--every",
            "3",
            "--json",
            str(out),
            "--plot",
            str(png),
        ]
    )
    assert code == 0
    result = json.loads(out.read_text())
    assert result["events"] == 3_000 and result["skipped_lines"] == 1
    assert set(result["models"]) == {
        "stream_rec",
        "stream_rec_mf_only",
        "stream_rec_session_only",
        "stream_rec_no_features",
        "stream_rec_no_demographics",
        "popularity",
        "river_biasedmf",
    }
    for figures in result["models"].values():
        assert {
            "mae",
            "rmse",
            "recall@10",
            "ndcg@10",
            "coverage@10",
            "diversity@10",
            "novelty@10",
            "cold_recall@10",
            "events_per_s",
        } <= set(figures)
    assert result["models"]["stream_rec"]["recall@10"] > result["models"]["popularity"]["recall@10"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_evaluate_command_refuses_bad_arguments(tmp_path: Path) -> None:
    assert main(["evaluate", "--data", str(tmp_path), "--format", "movielens-100k"]) == 2
    assert main(["evaluate", "--data", str(tmp_path), "--format", "jsonl", "--models", "nope"]) == 2


def test_tags_are_known_only_after_they_were_applied() -> None:
    from stream_rec.evaluation.baselines import StreamRecModel
    from stream_rec.model import ModelParams

    model = StreamRecModel(
        "m",
        ModelParams(factors=4, negatives=2),
        item_features={"a": ["genre=x"]},
        timed_item_features=[(15.0, "a", "tag=late"), (5.0, "a", "tag=early")][::-1],
    )
    first = InteractionBatch.from_columns(
        ["u", "u"], ["a", "b"], [R, R], [4.0, 3.0], timestamps=[10.0, 20.0]
    )
    model.learn(first)
    tokens = model.model.item_features.ids
    row = model.model.items.row_of("a")
    assert row is not None
    known = {tokens[f] for f in model.model.items.side["features"][row] if f >= 0}
    assert known == {"genre=x", "tag=early"}  # the tag of t=15 came after the chunk began
    model.learn(InteractionBatch.from_columns(["u"], ["c"], [R], [5.0], timestamps=[30.0]))
    known = {tokens[f] for f in model.model.items.side["features"][row] if f >= 0}
    assert known == {"genre=x", "tag=early", "tag=late"}
